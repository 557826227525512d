"""``Ontology``: one ontology kind in memory, answering names, closures and the related matrix.

Built from the compiled arrays of ``_load`` (never from a source file directly), so every method
here runs on integers and dict lookups: no parsing on a request path.
"""

from __future__ import annotations

import functools
import threading
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ontology._ids import (
    PREFIX_KIND,
    OntologyKind,
    canonical_id,
    check_kind,
    looks_like_id,
    split_id,
)
from ontology._load import Arrays, load_arrays, read_json_blob, read_labels, read_meta
from ontology._names import NameIndex
from ontology.errors import (
    AmbiguousTermError,
    EmptyTermError,
    KindMismatchError,
    MalformedTermError,
    ObsoleteTermError,
    ObsoleteTermWarning,
    UnknownPrefixError,
    UnknownTermError,
)

if TYPE_CHECKING:
    from ontology.mapping import LabelMapping

_CLOSURE_CACHE_SIZE = 1 << 15


class Ontology:
    """One ontology (CL, UBERON or MONDO + PATO "normal") with its is_a + part_of closure.

    Build it with ``Ontology.load(kind)`` (bundled files, cached closure) or
    ``Ontology.from_file(path, kind)`` (a user's JSON/OBO/OWL file). Instances are read-only and
    safe to share between threads.
    """

    def __init__(self, arrays: Arrays, *, cache_path: Path | None = None) -> None:
        meta = read_meta(arrays)
        self.kind: OntologyKind = check_kind(meta["kind"])
        self.name: str = meta["name"]
        self.version: str = meta["version"]
        self.cache_path = cache_path
        self._ids: list[str] = arrays["ids"].tolist()
        self._index: dict[str, int] = {tid: i for i, tid in enumerate(self._ids)}
        self._deprecated: np.ndarray = arrays["deprecated"]
        self._anc_ptr: np.ndarray = arrays["anc_ptr"]
        self._anc_idx: np.ndarray = arrays["anc_idx"]
        self._anc_dist: np.ndarray = arrays["anc_dist"]
        self._desc_ptr: np.ndarray = arrays["desc_ptr"]
        self._desc_idx: np.ndarray = arrays["desc_idx"]
        self._labels: list[str] = read_labels(arrays)
        self._arrays = arrays  # kept for the lazily decoded name index and synonyms
        self._synonyms_map: dict[int, list[str]] | None = None
        self._replaced_by: dict[int, str] = {int(k): v for k, v in meta["replaced_by"].items()}
        self._consider: dict[int, list[str]] = {int(k): v for k, v in meta["consider"].items()}
        self._names: NameIndex | None = None
        self._names_lock = threading.Lock()
        self._closure = functools.lru_cache(maxsize=_CLOSURE_CACHE_SIZE)(self._closure_uncached)

    # ------------------------------------------------------------------ construction

    @classmethod
    def load(cls, kind: OntologyKind, *, cache_dir: Path | None = None) -> Ontology:
        """The bundled ontology of ``kind``; parses and caches its closure on first use only."""
        arrays, path = load_arrays(check_kind(kind), cache_dir=cache_dir)
        return cls(arrays, cache_path=path)

    @classmethod
    def from_file(
        cls, path: Path, kind: OntologyKind, *, cache_dir: Path | None = None
    ) -> Ontology:
        """An ontology from a user's file: cellxgene JSON (``.json[.zst]``) or OBO/OWL (pronto)."""
        arrays, cache_path = load_arrays(check_kind(kind), cache_dir=cache_dir, source=Path(path))
        return cls(arrays, cache_path=cache_path)

    def __repr__(self) -> str:
        return f"Ontology({self.name} {self.version}, kind={self.kind!r}, {len(self)} terms)"

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, term_id: object) -> bool:
        return isinstance(term_id, str) and term_id in self._index

    def term_ids(self, *, include_obsolete: bool = False) -> Iterator[str]:
        """Every term id, live ones only unless asked."""
        for i, tid in enumerate(self._ids):
            if include_obsolete or not self._deprecated[i]:
                yield tid

    # ------------------------------------------------------------------ ids

    def _idx(self, term_id: str) -> int:
        """Index of an id (any term, obsolete included), with a specific error for bad ids."""
        i = self._index.get(term_id) if isinstance(term_id, str) else None
        if i is not None:
            return i
        canonical = canonical_id(term_id)
        i = self._index.get(canonical)
        if i is not None:
            return i
        prefix = canonical.split(":", 1)[0]
        other = PREFIX_KIND.get(prefix)
        if other is None:
            known = ", ".join(sorted(PREFIX_KIND))
            msg = f"unknown ontology prefix {prefix!r} in {term_id!r}: expected one of {known}"
            raise UnknownPrefixError(msg)
        if other != self.kind:
            msg = f"{canonical} is a {other} term, not a {self.kind} term ({self.name})"
            raise KindMismatchError(msg)
        msg = f"{canonical} is not a term of {self.name} {self.version}"
        raise UnknownTermError(msg)

    def _live(self, term_id: str) -> int:
        """Index of a live term: hierarchy questions about obsolete terms have no answer."""
        i = self._idx(term_id)
        if self._deprecated[i]:
            raise self._obsolete_error(i)
        return i

    def _obsolete_error(self, i: int, replaced_by: str | None = None) -> ObsoleteTermError:
        rep = replaced_by if replaced_by is not None else self._replaced_by.get(i)
        foreign = rep if rep is not None and rep not in self._index else None
        consider = self._consider.get(i, [])
        hint = ""
        if foreign:
            hint = f"; the source replaces it by {foreign}, outside {self.name}"
        if consider:
            hint += f"; consider {', '.join(consider)}"
        msg = f"{self._ids[i]} ({self._labels[i]!r}) is obsolete with no replacement{hint}"
        return ObsoleteTermError(msg, replaced_by=foreign, consider=consider)

    def is_obsolete(self, term_id: str) -> bool:
        """True when the term is marked deprecated in the source."""
        return bool(self._deprecated[self._idx(term_id)])

    def replaced_by(self, term_id: str) -> str | None:
        """The replacement the source names for an obsolete term (may lie in another ontology)."""
        return self._replaced_by.get(self._idx(term_id))

    def label(self, term_id: str) -> str:
        """The term's label (obsolete terms keep theirs, usually prefixed "obsolete ")."""
        return self._labels[self._idx(term_id)]

    def synonyms(self, term_id: str) -> tuple[str, ...]:
        """The term's exact and related synonyms as the source lists them."""
        i = self._idx(term_id)
        if self._synonyms_map is None:
            blob = read_json_blob(self._arrays, "synonyms")
            self._synonyms_map = {int(k): v for k, v in blob.items()}
        return tuple(self._synonyms_map.get(i, ()))

    # ------------------------------------------------------------------ resolve

    @property
    def names(self) -> NameIndex:
        """The label/synonym index, decoded from the cache on first use (tens of ms for MONDO)."""
        if self._names is None:
            with self._names_lock:
                if self._names is None:
                    self._names = NameIndex(self._arrays)
        return self._names

    def resolve(self, text: str) -> str:
        """An id, label or synonym (case- and space-insensitive) -> the canonical live term id.

        Obsolete terms follow ``replaced_by`` with an ``ObsoleteTermWarning``, or raise
        ``ObsoleteTermError`` when there is no replacement in this ontology.
        """
        if not isinstance(text, str):
            msg = f"expected a term id or name as a string, got {type(text).__name__}"
            raise MalformedTermError(msg)
        if not text.strip():
            msg = f"empty {self.kind} term: give an id like 'CL:0000236' or a name like 'B cell'"
            raise EmptyTermError(msg)
        i = self._index.get(text)
        if i is None:
            i = self._resolve_slow(text)
        if self._deprecated[i]:
            i = self._follow_replacement(i)
        return self._ids[i]

    def _resolve_slow(self, text: str) -> int:
        parts = split_id(text)
        if parts is not None and parts[0] in PREFIX_KIND:
            return self._idx(text)
        tier, hits = self.names.lookup(text)
        if len(hits) == 1:
            return hits[0]
        if hits:
            candidates = [self._ids[i] for i in hits]
            listed = "; ".join(f"{self._ids[i]} ({self._labels[i]})" for i in hits)
            msg = f"{text!r} is a {tier} of several {self.name} terms: {listed}; give the id"
            raise AmbiguousTermError(msg, candidates=candidates)
        if looks_like_id(text):
            return self._idx(text)  # raises the specific malformed/unknown-prefix error
        close = self.names.suggest(text)
        suggestions = [self._ids[i] for i in close]
        listed = "; ".join(f"{self._ids[i]} ({self._labels[i]})" for i in close)
        hint = f"; closest: {listed}" if close else ""
        msg = f"no {self.name} term has the id, label or synonym {text!r}{hint}"
        raise UnknownTermError(msg, suggestions=suggestions)

    def _follow_replacement(self, i: int) -> int:
        start, seen = i, {i}
        while self._deprecated[i]:
            rep = self._replaced_by.get(i)
            nxt = self._index.get(rep) if rep is not None else None
            if nxt is None or nxt in seen:
                raise self._obsolete_error(i, rep)
            seen.add(nxt)
            i = nxt
        msg = (
            f"{self._ids[start]} ({self._labels[start]!r}) is obsolete; "
            f"using its replacement {self._ids[i]} ({self._labels[i]!r})"
        )
        warnings.warn(msg, ObsoleteTermWarning, stacklevel=3)
        return i

    # ------------------------------------------------------------------ closures

    def _closure_uncached(self, i: int, *, up: bool, include_self: bool) -> frozenset[str]:
        ptr, idx = (self._anc_ptr, self._anc_idx) if up else (self._desc_ptr, self._desc_idx)
        ids = self._ids
        out = [ids[j] for j in idx[ptr[i] : ptr[i + 1]].tolist()]
        if include_self:
            out.append(ids[i])
        return frozenset(out)

    def _ancestor_rows(self, i: int) -> np.ndarray:
        return self._anc_idx[self._anc_ptr[i] : self._anc_ptr[i + 1]]

    def ancestors(self, term_id: str, *, include_self: bool = True) -> frozenset[str]:
        """Every term reachable by is_a or part_of, as the source's closure gives it."""
        return self._closure(self._live(term_id), up=True, include_self=include_self)

    def descendants(self, term_id: str, *, include_self: bool = True) -> frozenset[str]:
        """Every term that has this one among its is_a + part_of ancestors."""
        return self._closure(self._live(term_id), up=False, include_self=include_self)

    def ancestor_distances(self, term_id: str) -> dict[str, int]:
        """Ancestor id -> shortest path length (self excluded), nearest first."""
        i = self._live(term_id)
        lo, hi = self._anc_ptr[i], self._anc_ptr[i + 1]
        dist = self._anc_dist[lo:hi].tolist()
        return {self._ids[j]: d for j, d in zip(self._anc_idx[lo:hi].tolist(), dist, strict=True)}

    def is_related(self, a: str, b: str) -> bool:
        """True when ``a == b`` or one is an ancestor of the other: never a negative pair."""
        ia, ib = self._live(a), self._live(b)
        if ia == ib:
            return True
        ids = self._ids
        return ids[ib] in self._closure(ia, up=True, include_self=False) or ids[ia] in (
            self._closure(ib, up=True, include_self=False)
        )

    def lowest_common_ancestor(self, term_ids: Iterable[str]) -> str | None:
        """The most specific term that is (or is an ancestor of) every given term; None if none.

        "Most specific" is the common ancestor with the most ancestors of its own, which is
        never an ancestor of another common one; ties go to the smallest id.
        """
        indices = {self._live(t) for t in term_ids}
        if not indices:
            return None
        common: set[int] | None = None
        for i in indices:
            mine = {i, *self._ancestor_rows(i).tolist()}
            common = mine if common is None else common & mine
            if not common:
                return None
        assert common is not None
        ptr = self._anc_ptr
        best = min(common, key=lambda c: (-(ptr[c + 1] - ptr[c]), self._ids[c]))
        return self._ids[best]

    def related_matrix(self, term_ids: Sequence[str]) -> np.ndarray:
        """``(N, N)`` bool: ``[i, j]`` is True when ``is_related(term_ids[i], term_ids[j])``.

        Vectorised over the unique terms: one gather of their ancestor rows, one scatter.
        """
        cache: dict[str, int] = {}
        idx = np.empty(len(term_ids), dtype=np.int64)
        for k, tid in enumerate(term_ids):
            i = cache.get(tid)
            if i is None:
                i = cache[tid] = self._live(tid)
            idx[k] = i
        return self._related_from_indices(idx)

    def _related_from_indices(self, idx: np.ndarray) -> np.ndarray:
        uniq, inverse = np.unique(idx, return_inverse=True)
        u = len(uniq)
        pos = np.full(len(self._ids), -1, dtype=np.int64)
        pos[uniq] = np.arange(u)
        starts = self._anc_ptr[uniq]
        lens = self._anc_ptr[uniq + 1] - starts
        total = int(lens.sum())
        rows = np.repeat(np.arange(u), lens)
        offsets = np.arange(total) - np.repeat(np.cumsum(lens) - lens, lens)
        cols = pos[self._anc_idx[np.repeat(starts, lens) + offsets]]
        keep = cols >= 0
        small = np.zeros((u, u), dtype=bool)
        small[rows[keep], cols[keep]] = True
        small |= small.T
        np.fill_diagonal(small, val=True)
        return small[np.ix_(inverse, inverse)]

    # ------------------------------------------------------------------ mapping

    def map_labels(
        self, values: Iterable[str], *, mapping: Mapping[str, str] | Path | None = None
    ) -> LabelMapping:
        """Map free-text author labels to term ids; see ``ontology.mapping.map_labels``."""
        from ontology.mapping import map_values

        return map_values(self, values, mapping=mapping)
