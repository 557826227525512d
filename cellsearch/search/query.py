"""Queries: by vector(s), by stored cells, and by the centroid of a set of cells.

Plain functions over a :class:`~vectorstore.CellStore`; the gRPC servicer decodes a request,
calls one of these and encodes the reply. Every query runs as one filtered store search:
the filter is applied inside the index, so k results are k matching cells.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.cluster.vq import kmeans

from cellsearch.search.errors import (
    InvalidQueryError,
    KTooLargeError,
    TooManyQueryCellsError,
    UnknownCellError,
)
from cellsearch.search.filters import FilterSpec, Resolver, build_filter
from vectorstore import DIM, CellRef, CellStore, Hit, SearchFilter
from vectorstore.base import as_query_matrix

DEFAULT_MAX_K = 10_000
#: Neighbours per query cell when a search leaves k at 0.
DEFAULT_K = 10
#: Candidate neighbours per query cell of an annotation when a request leaves k at 0: each
#: reference study's nearest few of them vote (``AnnotationConfig.per_study``).
DEFAULT_ANNOTATE_K = 100


@dataclass(frozen=True)
class QueryLimits:
    """Per-request limits (the service fills them from Settings.max_k / max_query_cells)."""

    max_k: int = DEFAULT_MAX_K
    max_query_cells: int = 10_000


def resolve_k(k: int, limits: QueryLimits, *, default: int = DEFAULT_K) -> int:
    """``k``, or ``default`` when it is 0 (the proto's unset), checked against the limits."""
    k = int(k) or default
    check_k(k, limits)
    return k


def check_n_cells(n: int, limits: QueryLimits) -> None:
    """Refuse an empty query or one over the query-cell limit."""
    _check_n(n, limits)


def check_k(k: int, limits: QueryLimits) -> None:
    if k < 1:
        msg = f"k must be at least 1, got {k}"
        raise InvalidQueryError(msg)
    if k > limits.max_k:
        raise KTooLargeError(k, limits.max_k)


def _check_n(n: int, limits: QueryLimits) -> None:
    if n == 0:
        msg = "the query holds no cells; send at least one vector or cell id"
        raise InvalidQueryError(msg)
    if n > limits.max_query_cells:
        raise TooManyQueryCellsError(n, limits.max_query_cells)


def _as_vectors(vectors: np.ndarray) -> np.ndarray:
    """Unit float32 rows; the store's own check, reported as the caller's mistake."""
    try:
        return as_query_matrix(vectors, DIM)
    except ValueError as exc:
        raise InvalidQueryError(str(exc)) from exc


def search_vectors(
    store: CellStore,
    vectors: np.ndarray,
    k: int,
    spec: FilterSpec | None = None,
    *,
    limits: QueryLimits | None = None,
    query_studies: Iterable[str] = (),
    extra_filter: SearchFilter | None = None,
    with_vectors: bool = False,
    ef: int | None = None,
    resolve: Resolver | None = None,
) -> list[list[Hit]]:
    """The ``k`` nearest matching cells for each query vector, best first."""
    limits = limits or QueryLimits()
    check_k(k, limits)
    mat = _as_vectors(vectors)
    _check_n(len(mat), limits)
    flt = build_filter(spec, query_studies=query_studies, resolve=resolve)
    if extra_filter is not None:
        flt = extra_filter.and_(flt)
    return store.search(mat, k, flt, with_vectors=with_vectors, ef=ef)


def fetch_cells(store: CellStore, cells: Sequence[CellRef]) -> list[Hit]:
    """Stored cells with vectors, one per reference; unknown ones raise ``UnknownCellError``."""
    hits = store.retrieve(list(cells), with_vectors=True)
    found_pairs = {(h.dataset_id, h.cell_id) for h in hits}
    found_ids = {h.cell_id for h in hits}
    missing = [
        "/".join(ref) if isinstance(ref, tuple) else ref
        for ref in cells
        if (ref not in found_pairs if isinstance(ref, tuple) else ref not in found_ids)
    ]
    if missing:
        raise UnknownCellError(missing)
    return hits


def search_cells(
    store: CellStore,
    cells: Sequence[CellRef],
    k: int,
    spec: FilterSpec | None = None,
    *,
    limits: QueryLimits | None = None,
    exclude_self: bool = True,
    with_vectors: bool = False,
    ef: int | None = None,
    resolve: Resolver | None = None,
) -> list[list[Hit]]:
    """Neighbours of stored cells (one result list per stored cell found for ``cells``).

    The query cells' own studies are known here, so ``spec.exclude_query_studies`` works;
    with ``exclude_self`` a query cell never appears in its own results.
    """
    limits = limits or QueryLimits()
    check_k(k, limits)
    _check_n(len(cells), limits)
    queries = fetch_cells(store, cells)
    _check_n(len(queries), limits)
    studies = {str(h.payload.get("study_id")) for h in queries if h.payload.get("study_id")}
    flt = build_filter(spec, query_studies=studies, resolve=resolve)
    mat = np.stack([np.asarray(h.vector) for h in queries])
    extra = 1 if exclude_self else 0
    results = store.search(mat, k + extra, flt, with_vectors=with_vectors, ef=ef)
    if not exclude_self:
        return results
    out = []
    for q, hits in zip(queries, results, strict=True):
        kept = [h for h in hits if (h.dataset_id, h.cell_id) != (q.dataset_id, q.cell_id)]
        out.append(kept[:k])
    return out


@dataclass(frozen=True)
class CentroidResult:
    """A centroid query's answer and how much to trust it.

    ``coherence`` follows SCimilarity's query coherence (``search_centroid_nearest``): the
    query cells are split into up to ``clusters`` k-means clusters, each cluster centre's
    ``coherence_k`` nearest cells are searched, and coherence is the mean share of those
    that are also among the centroid's results. Near 1: the query cells agree on one
    neighbourhood; near 0: the centroid averages unrelated states and its hits describe
    none of them. (SCimilarity reports the mean overlap count out of 100; we divide by
    ``coherence_k``.)
    """

    centroid: np.ndarray
    hits: list[Hit]
    coherence: float | None
    n_query_cells: int


def centroid_of(vectors: np.ndarray) -> np.ndarray:
    """The unit mean direction of unit-normalised embeddings.

    SCimilarity embeds the mean expression profile; we hold embeddings, so the centroid is
    taken in embedding space (the mean of unit vectors, renormalised)."""
    mat = _as_vectors(vectors)
    mean = mat.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    if norm < 1e-6:
        msg = "the query cells' embeddings cancel out: their centroid has no direction"
        raise InvalidQueryError(msg)
    return np.asarray(mean / norm, dtype=np.float32)


def query_coherence(
    store: CellStore,
    vectors: np.ndarray,
    result: Sequence[Hit],
    flt: SearchFilter | None,
    *,
    clusters: int = 10,
    coherence_k: int = 100,
    seed: int = 4,
    ef: int | None = None,
    exclude: frozenset[tuple[str, str]] = frozenset(),
) -> float:
    """SCimilarity's query coherence of ``vectors`` against a centroid ``result`` (0..1).

    ``exclude``: (dataset_id, cell_id) of stored query cells, left out of both sides."""
    mat = _as_vectors(vectors)
    n_clusters = min(clusters, len(mat))
    if n_clusters == len(mat):
        centres = mat
    else:
        rng = np.random.default_rng(seed)
        centres, _ = kmeans(mat.astype(np.float64), n_clusters, seed=rng)
    result_ids = {(h.dataset_id, h.cell_id) for h in result}
    per_cluster = store.search(centres.astype(np.float32), coherence_k + len(exclude), flt, ef=ef)
    overlaps = []
    for hits in per_cluster:
        kept = [(h.dataset_id, h.cell_id) for h in hits]
        kept = [key for key in kept if key not in exclude][:coherence_k]
        overlaps.append(sum(key in result_ids for key in kept) / coherence_k)
    return float(np.mean(overlaps))


def search_centroid(
    store: CellStore,
    k: int,
    spec: FilterSpec | None = None,
    *,
    cells: Sequence[CellRef] = (),
    vectors: np.ndarray | None = None,
    limits: QueryLimits | None = None,
    coherence: bool = True,
    coherence_clusters: int = 10,
    coherence_k: int = 100,
    seed: int = 4,
    with_vectors: bool = False,
    ef: int | None = None,
    resolve: Resolver | None = None,
) -> CentroidResult:
    """Cells nearest the centroid of a set of cells (stored ids, or vectors), with coherence.

    Query cells given by id are not returned among the hits (they would trivially rank high).
    """
    limits = limits or QueryLimits()
    check_k(k, limits)
    if bool(cells) == (vectors is not None):
        msg = "a centroid query takes either stored cells= or vectors=, exactly one of them"
        raise InvalidQueryError(msg)
    studies: set[str] = set()
    own: set[tuple[str, str]] = set()
    if cells:
        _check_n(len(cells), limits)
        found = fetch_cells(store, cells)
        mat = np.stack([np.asarray(h.vector) for h in found])
        studies = {str(h.payload["study_id"]) for h in found if h.payload.get("study_id")}
        own = {(h.dataset_id, h.cell_id) for h in found}
    else:
        mat = _as_vectors(np.asarray(vectors))
        _check_n(len(mat), limits)
    centre = centroid_of(mat)
    flt = build_filter(spec, query_studies=studies, resolve=resolve)
    (hits,) = store.search(centre, k + len(own), flt, with_vectors=with_vectors, ef=ef)
    hits = [h for h in hits if (h.dataset_id, h.cell_id) not in own][:k]
    coh = None
    if coherence:
        coh = query_coherence(
            store,
            mat,
            hits,
            flt,
            clusters=coherence_clusters,
            coherence_k=coherence_k,
            seed=seed,
            ef=ef,
            exclude=frozenset(own),
        )
    return CentroidResult(centroid=centre, hits=hits, coherence=coh, n_query_cells=len(mat))
