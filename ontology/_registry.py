"""The process-wide ontologies and the module-level verbs that use them.

One ``Ontology`` per kind per process: loading is cheap from the cache, but every caller (the
service's filter planner, the ingestion validator, the encoder's miner) should share the same
in-memory closure and name index.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ontology._ids import OntologyKind, check_kind, kind_of
from ontology.core import Ontology
from ontology.errors import KindMismatchError
from ontology.mapping import LabelMapping

_LOADED: dict[OntologyKind, Ontology] = {}
_LOCK = threading.Lock()


def get_ontology(kind: OntologyKind, *, cache_dir: Path | None = None) -> Ontology:
    """The process-wide ontology of ``kind``, loaded (or built and cached) on first call.

    ``cache_dir`` (default ``~/.cache/cellsearch/ontology``) only matters on that first call:
    it says where the compiled closure lives, not what it holds.
    """
    kind = check_kind(kind)
    onto = _LOADED.get(kind)
    if onto is None:
        with _LOCK:
            onto = _LOADED.get(kind)
            if onto is None:
                onto = _LOADED[kind] = Ontology.load(kind, cache_dir=cache_dir)
    return onto


def clear_loaded() -> None:
    """Forget the process-wide ontologies (tests; a long-lived process after an upgrade)."""
    with _LOCK:
        _LOADED.clear()


def resolve(text: str, kind: OntologyKind) -> str:
    """An id, label or synonym (case- and space-insensitive) -> the canonical term id."""
    return get_ontology(kind).resolve(text)


def label(term_id: str) -> str:
    """The label of a term id of any kind."""
    return get_ontology(kind_of(term_id)).label(term_id)


def ancestors(term_id: str, *, include_self: bool = True) -> frozenset[str]:
    """The is_a + part_of ancestors of a term, itself included unless asked not to."""
    return get_ontology(kind_of(term_id)).ancestors(term_id, include_self=include_self)


def descendants(term_id: str, *, include_self: bool = True) -> frozenset[str]:
    """Every term with ``term_id`` among its is_a + part_of ancestors."""
    return get_ontology(kind_of(term_id)).descendants(term_id, include_self=include_self)


def is_related(a: str, b: str) -> bool:
    """``a == b`` or one is an ancestor of the other; terms of different kinds never are."""
    kind_a, kind_b = kind_of(a), kind_of(b)
    if kind_a != kind_b:
        get_ontology(kind_a)._live(a)  # still reject unknown or obsolete ids
        get_ontology(kind_b)._live(b)
        return False
    return get_ontology(kind_a).is_related(a, b)


def lowest_common_ancestor(term_ids: Iterable[str]) -> str | None:
    """The most specific common ancestor of terms of one kind; None when there is none."""
    ids = list(term_ids)
    if not ids:
        return None
    kinds = {kind_of(t) for t in ids}
    if len(kinds) > 1:
        msg = f"lowest_common_ancestor needs terms of one kind, got {sorted(kinds)}"
        raise KindMismatchError(msg)
    return get_ontology(kinds.pop()).lowest_common_ancestor(ids)


def related_matrix(term_ids: Sequence[str]) -> np.ndarray:
    """``(N, N)`` bool matrix of ``is_related``; terms of different kinds are never related."""
    kinds = [kind_of(t) for t in term_ids]
    if len(set(kinds)) <= 1:
        if not kinds:
            return np.zeros((0, 0), dtype=bool)
        return get_ontology(kinds[0]).related_matrix(term_ids)
    out = np.zeros((len(term_ids), len(term_ids)), dtype=bool)
    for kind in set(kinds):
        rows = np.flatnonzero(np.asarray(kinds) == kind)
        block = get_ontology(kind).related_matrix([term_ids[int(i)] for i in rows])
        out[np.ix_(rows, rows)] = block
    return out


def map_labels(
    values: Iterable[str],
    kind: OntologyKind,
    *,
    mapping: Mapping[str, str] | Path | None = None,
) -> LabelMapping:
    """Map free-text labels to ids of ``kind``: user mapping first, then id/label/synonym."""
    return get_ontology(kind).map_labels(values, mapping=mapping)
