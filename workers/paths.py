"""Which files ingestion may open: only regular files under the configured allowed roots.

A job's path comes from a client, so it is checked before anything reads it: it must be
absolute, contain no ``..`` component, exist, and resolve (symlinks followed) to a place
inside one of the roots. The resolved path is what the pipeline opens, so a symlink swapped
after the check cannot redirect the read outside the roots.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from workers.errors import PathNotAllowedError


def check_path(path: str | Path, allowed_roots: Iterable[Path]) -> Path:
    """The resolved path of ``path`` if ingestion may read it; else :class:`PathNotAllowedError`."""
    roots = [Path(r).resolve() for r in allowed_roots]
    shown = ", ".join(str(r) for r in roots) or "(none configured)"
    text = str(path)
    if not text.strip():
        msg = f"empty path; give the absolute path of a file under an allowed root: {shown}"
        raise PathNotAllowedError(msg)
    raw = Path(text)
    if not raw.is_absolute():
        msg = f"{text!r} is relative; give the absolute path of a file under one of: {shown}"
        raise PathNotAllowedError(msg)
    if ".." in raw.parts:
        msg = f"{text!r} contains '..'; give a direct path under one of the allowed roots: {shown}"
        raise PathNotAllowedError(msg)
    if not roots:
        msg = "no allowed roots are configured (CELLSEARCH_ALLOWED_ROOTS); ingestion reads nothing"
        raise PathNotAllowedError(msg)
    try:
        resolved = raw.resolve(strict=True)
    except (FileNotFoundError, RuntimeError) as exc:
        msg = f"{text!r} does not exist (or is a broken/looping symlink); check the path"
        raise PathNotAllowedError(msg) from exc
    if not any(resolved.is_relative_to(root) for root in roots):
        via = "" if resolved == raw else f" (it resolves to {str(resolved)!r})"
        msg = (
            f"{text!r} is outside the allowed roots{via}; copy the file under one of: {shown}, "
            "or ask an operator to add its folder to CELLSEARCH_ALLOWED_ROOTS"
        )
        raise PathNotAllowedError(msg)
    return resolved
