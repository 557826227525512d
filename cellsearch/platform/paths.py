"""Which files ingestion may open: only regular files under the configured allowed roots.

A job's path comes from a client, so it is checked before anything reads it: it must be
absolute, contain no ``..`` component, exist, and resolve (symlinks followed) to a place
inside one of the roots.

The pipeline then opens the file **once** (:func:`open_checked`) and reads only through that
handle: the open refuses a final symlink, the handle's real path is checked against the
roots again *after* the open (so a folder swapped for a symlink between the check and the
open is caught), and every later read goes through ``/proc/self/fd/N``, which names the
opened inode, never the path again. A folder swapped for a symlink during validation used
to get 20,000 cells from outside the roots ingested (tests/workers/test_workers_paths.py).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cellsearch.platform.errors import NotFoundError, PathNotAllowedError


class InputNotFoundError(PathNotAllowedError, NotFoundError):
    """The path names nothing (or a broken or looping symlink)."""


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
        msg = (
            f"{text!r} does not exist (or is a broken/looping symlink); check the path "
            "(it is the server's, not yours)"
        )
        raise InputNotFoundError(msg) from exc
    if not any(resolved.is_relative_to(root) for root in roots):
        via = "" if resolved == raw else f" (it resolves to {str(resolved)!r})"
        msg = (
            f"{text!r} is outside the allowed roots{via}; copy the file under one of: {shown}, "
            "or ask an operator to add its folder to CELLSEARCH_ALLOWED_ROOTS"
        )
        raise PathNotAllowedError(msg)
    return resolved


_FD_DIR = Path("/proc/self/fd")


@dataclass(frozen=True)
class OpenedInput:
    """An ingestion input opened once: read ``path`` (the handle), show ``shown``."""

    path: Path
    shown: Path


@contextmanager
def open_checked(path: str | Path, allowed_roots: Iterable[Path]) -> Iterator[OpenedInput]:
    """Open ``path`` once inside the roots; yield a path that always names that handle.

    Raises :class:`PathNotAllowedError` when the path, or what was actually opened, lies
    outside the roots, or is neither a regular file nor a folder.
    """
    roots = [Path(r).resolve() for r in allowed_roots]
    resolved = check_path(path, roots)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(resolved, flags)
    except OSError as exc:
        msg = f"{str(path)!r} cannot be opened safely ({exc.strerror}); was it replaced?"
        raise PathNotAllowedError(msg) from exc
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            msg = f"{str(path)!r} is not a regular file or folder; ingestion reads neither"
            raise PathNotAllowedError(msg)
        if not _FD_DIR.is_dir():  # no /proc (not Linux): the checked path is the best we have
            yield OpenedInput(path=resolved, shown=resolved)
            return
        handle = _FD_DIR / str(fd)
        opened = handle.readlink()
        if not any(opened.is_relative_to(root) for root in roots):
            msg = (
                f"{str(path)!r} was replaced while it was checked: what was opened is "
                f"{str(opened)!r}, outside the allowed roots; refusing it"
            )
            raise PathNotAllowedError(msg)
        yield OpenedInput(path=handle, shown=resolved)
    finally:
        os.close(fd)
