"""The one store interface, and the checks both backends share.

Both backends (the embedded engine in ``edge.py``, a Qdrant server in ``server.py``)
implement :class:`CellStore`; the congruence tests run one suite of assertions on each, so
callers may switch backends by configuration alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, cast, runtime_checkable

import numpy as np

from vectorstore.groups import GROUP_FIELD
from vectorstore.types import CellRecord, Hit, Payload, SearchFilter

#: A cell to retrieve: ``(dataset_id, cell_id)``, or a bare ``cell_id`` looked up in every dataset.
CellRef = tuple[str, str] | str


@runtime_checkable
class CellStore(Protocol):
    """A collection of embedded cells with filtered nearest-neighbour search."""

    def upsert(self, records: Sequence[CellRecord]) -> None:
        """Insert or overwrite cells; the same (dataset_id, cell_id) always lands on one point."""
        ...

    def upsert_grouped(
        self,
        dataset_id: str,
        cell_ids: Sequence[str],
        vectors: np.ndarray,
        payloads: Sequence[Mapping[str, str | list[str]]],
        group: np.ndarray,
    ) -> None:
        """The bulk form of :meth:`upsert` for one dataset: cell ``i`` gets
        ``payloads[group[i]]`` plus its ids; the stored points equal ``upsert``'s."""
        ...

    def search(
        self,
        vectors: np.ndarray,
        k: int,
        filter: SearchFilter | None = None,
        *,
        with_vectors: bool = False,
        ef: int | None = None,
        fields: Sequence[str] | None = None,
    ) -> list[list[Hit]]:
        """The ``k`` nearest stored cells to each row of ``vectors``, best first.

        ``fields``: the payload fields the hits carry (None: all). Reading a whole payload
        costs more than the search itself when k is large (annotation reads one field).
        """
        ...

    def retrieve(self, cells: Sequence[CellRef], *, with_vectors: bool = True) -> list[Hit]:
        """Stored cells by reference, in request order; unknown references are left out."""
        ...

    def search_ids(
        self,
        vectors: np.ndarray,
        k: int,
        filter: SearchFilter | None = None,
        *,
        ef: int | None = None,
        exact_vectors: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The kNN as arrays: ``(n, k)`` point ids (objects, ``None`` pads) and float32
        distances (``inf`` pads), best first, and no payload read.

        For bulk kNN (annotation): reading payloads and building a :class:`Hit` per
        neighbour cost more than the search. ``exact_vectors`` searches the float vectors
        even when the store keeps int8 codes (the graph walk is the same; recall is higher).
        Ids are opaque: pass them back to :meth:`payload_values`.
        """
        ...

    def payload_values(
        self, point_ids: Sequence[object], fields: Sequence[str]
    ) -> dict[str, list[str]]:
        """Some payload fields of points given by :meth:`search_ids` ids, read in one pass:
        one list per field, in the ids' order (``""`` where absent)."""
        ...

    def scan(
        self, filter: SearchFilter | None, fields: Sequence[str]
    ) -> tuple[list[str], np.ndarray, dict[str, list[str]]]:
        """Every stored cell matching ``filter``: point ids, float vectors ``(n, dim)`` and
        the values of some payload fields, in one pass (an in-memory index over the
        reference is built from it; ids are those :meth:`search_ids` returns)."""
        ...

    def count(self, filter: SearchFilter | None = None) -> int:
        """Exact number of stored cells matching ``filter``."""
        ...

    def facet(
        self, field: str, filter: SearchFilter | None = None, limit: int = 1000
    ) -> dict[str, int]:
        """Cells per value of ``field`` (most frequent first), among cells matching ``filter``."""
        ...

    def delete_dataset(self, dataset_id: str) -> int:
        """Remove every cell of a dataset; returns how many were removed."""
        ...

    def optimize(self) -> None:
        """Build the HNSW graph and merge segments now (ingestion calls it after bulk loads)."""
        ...

    def info(self) -> dict[str, int]:
        """``points`` stored and ``indexed_vectors`` in the HNSW graph (and backend extras)."""
        ...

    def close(self) -> None:
        """Flush and release the store; the object is unusable afterwards."""
        ...


def as_query_matrix(vectors: np.ndarray, dim: int) -> np.ndarray:
    """Queries as a C-contiguous float32 ``(n, dim)`` matrix of unit rows."""
    mat = np.asarray(vectors, dtype=np.float32)
    if mat.ndim == 1:
        mat = mat[None, :]
    if mat.ndim != 2 or mat.shape[1] != dim:
        msg = f"query vectors must have shape (n, {dim}) or ({dim},), got {np.shape(vectors)}"
        raise ValueError(msg)
    norms = np.linalg.norm(mat, axis=1, keepdims=True)
    if not np.all(np.isfinite(mat)) or np.any(norms == 0):
        msg = "query vectors must be finite and non-zero (cosine similarity needs a direction)"
        raise ValueError(msg)
    return np.ascontiguousarray(mat / norms)


def check_k(k: int) -> None:
    if k < 1:
        msg = f"k must be at least 1, got {k}"
        raise ValueError(msg)


def dedupe_records(records: Iterable[CellRecord]) -> list[CellRecord]:
    """Last record wins per point id: a batch repeating a cell must not double-write it."""
    by_id: dict[str, CellRecord] = {}
    for rec in records:
        by_id[rec.point_id] = rec
    return list(by_id.values())


def make_hit(score: float, payload: Mapping[str, object] | None, vector: object | None) -> Hit:
    """A :class:`Hit` from a backend's scored point."""
    # The store writes str and list[str] values only, besides the integer group id dropped here.
    pl = cast(Payload, {k: v for k, v in (payload or {}).items() if k != GROUP_FIELD})
    vec = None if vector is None else np.asarray(vector, dtype=np.float32)
    return Hit(
        cell_id=str(pl.get("cell_id", "")),
        dataset_id=str(pl.get("dataset_id", "")),
        score=float(score),
        distance=1.0 - float(score),
        payload=pl,
        vector=vec,
    )


def ids_and_distances(
    results: Sequence[Sequence[object]], k: int, point_id: Any, score: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Pack a backend's scored points into ``search_ids``'s two ``(n, k)`` arrays."""
    n = len(results)
    ids = np.full((n, k), None, dtype=object)
    dists = np.full((n, k), np.inf, dtype=np.float32)
    for i, res in enumerate(results):
        m = len(res)
        if m:
            ids[i, :m] = [point_id(p) for p in res]
            dists[i, :m] = [1.0 - score(p) for p in res]
    return ids, dists


def split_refs(cells: Sequence[CellRef]) -> tuple[list[tuple[str, str]], list[str]]:
    """Separate full ``(dataset_id, cell_id)`` references from bare cell ids."""
    pairs: list[tuple[str, str]] = []
    bare: list[str] = []
    for ref in cells:
        if isinstance(ref, str):
            bare.append(ref)
        elif isinstance(ref, tuple) and len(ref) == 2:
            pairs.append((str(ref[0]), str(ref[1])))
        else:
            msg = f"a cell reference is a cell_id or a (dataset_id, cell_id) pair, got {ref!r}"
            raise ValueError(msg)
    return pairs, bare


def order_hits(cells: Sequence[CellRef], found: Iterable[Hit]) -> list[Hit]:
    """Hits in the order they were asked for (a bare id may yield one hit per dataset)."""
    by_pair: dict[tuple[str, str], Hit] = {}
    by_cell: dict[str, list[Hit]] = {}
    for hit in found:
        by_pair[(hit.dataset_id, hit.cell_id)] = hit
        by_cell.setdefault(hit.cell_id, []).append(hit)
    out: list[Hit] = []
    seen: set[tuple[str, str]] = set()
    for ref in cells:
        cands = [by_pair[ref]] if isinstance(ref, tuple) and ref in by_pair else []
        if isinstance(ref, str):
            cands = sorted(by_cell.get(ref, []), key=lambda h: h.dataset_id)
        for hit in cands:
            key = (hit.dataset_id, hit.cell_id)
            if key not in seen:
                seen.add(key)
                out.append(hit)
    return out


class StoreLockedError(RuntimeError):
    """The embedded store folder is open in another process (one process owns a shard)."""


def payload_columns(
    point_ids: Sequence[object], records: Iterable[Any], fields: Sequence[str]
) -> dict[str, list[str]]:
    """:meth:`CellStore.payload_values` from a backend's retrieved ``records`` (each with
    ``id`` and ``payload``; a missing point reads ``""``)."""
    found = {str(r.id): r.payload or {} for r in records}
    rows = [found.get(str(i), {}) for i in point_ids]
    return {f: [str(row.get(f, "")) for row in rows] for f in fields}


def collect_scan(
    fetch: Callable[[Any], tuple[Sequence[Any], Any]], fields: Sequence[str], dim: int
) -> tuple[list[str], np.ndarray, dict[str, list[str]]]:
    """:meth:`CellStore.scan` over a backend's scroll: ``fetch(offset) -> (points, next
    offset or None)``; each point has ``id``, ``vector`` and ``payload``."""
    ids: list[str] = []
    vectors: list[np.ndarray] = []
    values: dict[str, list[str]] = {f: [] for f in fields}
    offset = None
    while True:
        points, offset = fetch(offset)
        for point in points:
            ids.append(str(point.id))
            vectors.append(np.asarray(point.vector, dtype=np.float32))
            payload = point.payload or {}
            for f, column in values.items():
                column.append(str(payload.get(f, "")))
        if offset is None:
            break
    mat = np.asarray(vectors, dtype=np.float32) if vectors else np.zeros((0, dim), np.float32)
    return ids, np.ascontiguousarray(mat.reshape(-1, dim)), values
