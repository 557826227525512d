"""Term ids: their shape, their prefix and which ontology kind a prefix belongs to.

Kept apart from the loaders so that checking an id never needs an ontology in memory.
"""

from __future__ import annotations

import re
from typing import Literal

from ontology.errors import EmptyTermError, MalformedTermError, UnknownPrefixError

OntologyKind = Literal["cell_type", "tissue", "disease"]
KINDS: tuple[OntologyKind, ...] = ("cell_type", "tissue", "disease")

#: Which ontology file backs each kind.
SOURCE_PREFIX: dict[OntologyKind, str] = {"cell_type": "CL", "tissue": "UBERON", "disease": "MONDO"}

#: Prefix -> kind. PATO is a disease-kind prefix only for PATO:0000461 ("normal"), the
#: value CELLxGENE uses for healthy donors.
PREFIX_KIND: dict[str, OntologyKind] = {
    "CL": "cell_type",
    "UBERON": "tissue",
    "MONDO": "disease",
    "PATO": "disease",
}
NORMAL_ID = "PATO:0000461"

_ID_RE = re.compile(r"^([A-Za-z][A-Za-z0-9]*)[:_](\d+)$")
# Anything shaped like "PREFIX:..." without spaces: treated as an attempted id.
_ID_LIKE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]*:\S*$")
# A prefix run into its digits ("CL0000236"): an id with its separator missing.
_RUN_TOGETHER_RE = re.compile(r"^[A-Za-z]+\d{5,}$")
# One of our prefixes and a colon, whatever follows ("CL:00 02").
_OUR_PREFIX_RE = re.compile(r"^([A-Za-z]+)\s*:")


def split_id(term_id: str) -> tuple[str, str] | None:
    """``(PREFIX, digits)`` if ``term_id`` is an id (``CL:0000236``, ``cl_0000236``); else None."""
    match = _ID_RE.match(term_id.strip())
    if match is None:
        return None
    return match.group(1).upper(), match.group(2)


def looks_like_id(text: str) -> bool:
    """True for text a user meant as an id, well-formed or not (``CL:abc``, ``CL:``)."""
    stripped = text.strip()
    return (
        split_id(stripped) is not None
        or _ID_LIKE_RE.match(stripped) is not None
        or _RUN_TOGETHER_RE.match(stripped) is not None
        or ((m := _OUR_PREFIX_RE.match(stripped)) is not None and m.group(1).upper() in PREFIX_KIND)
    )


def canonical_id(term_id: str) -> str:
    """Return ``PREFIX:digits`` for an id, raising a specific error for anything else."""
    if not isinstance(term_id, str):
        msg = f"a term id must be a string like 'CL:0000236', got {type(term_id).__name__}"
        raise MalformedTermError(msg)
    if not term_id.strip():
        msg = "empty term id: expected an id like 'CL:0000236'"
        raise EmptyTermError(msg)
    parts = split_id(term_id)
    if parts is None:
        msg = f"malformed term id {term_id!r}: expected PREFIX:digits, like 'CL:0000236'"
        raise MalformedTermError(msg)
    return f"{parts[0]}:{parts[1]}"


def kind_of(term_id: str) -> OntologyKind:
    """The ontology kind of a term id, from its prefix alone (no ontology is loaded)."""
    prefix = canonical_id(term_id).split(":", 1)[0]
    kind = PREFIX_KIND.get(prefix)
    if kind is None:
        known = ", ".join(sorted(PREFIX_KIND))
        msg = f"unknown ontology prefix {prefix!r} in {term_id!r}: expected one of {known}"
        raise UnknownPrefixError(msg)
    return kind


def check_kind(kind: str) -> OntologyKind:
    """Validate a kind argument, so a typo fails with the list of valid kinds."""
    if kind not in SOURCE_PREFIX:
        msg = f"unknown ontology kind {kind!r}: expected one of {', '.join(KINDS)}"
        raise ValueError(msg)
    return kind
