"""The search core's door for its callers (the in-process ``Atlas``, the gRPC servicers):
queries, centroid and annotation over one store.

The only state here is what annotation precomputes per reference (the cross-study
calibration and the label space of the vote), cached per reference filter and recomputed
when the atlas changes size.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from cellsearch.platform import schema
from cellsearch.platform.settings import Settings
from cellsearch.search import annotate as core_annotate
from cellsearch.search import query as core_query
from cellsearch.search.errors import EmptyReferenceError, InvalidQueryError
from cellsearch.search.filters import FilterSpec, build_filter
from cellsearch.search.frames import term_label
from cellsearch.search.knn import IndexSlot, ReferenceIndex, faiss_available
from vectorstore import DIM, CellRef, CellStore, Hit, SearchFilter

#: Reference cells sampled to calibrate the "unknown" flag (its tail quantile only).
CALIBRATION_SAMPLE = 2000
_SAMPLE_DIRECTIONS = 32


def store_filter(spec: FilterSpec | None, query_studies: Sequence[str] = ()) -> Any:
    """The store filter for a filter spec (None when it constrains nothing)."""
    return build_filter(spec, query_studies=tuple(query_studies))


#: The facets ``Stats`` counts when the request names none.
DEFAULT_FACETS: tuple[str, ...] = ("cell_type", "tissue", "disease", "study")

FacetRows = list[tuple[str, str, int]]


def facet_counts(
    store: CellStore, spec: FilterSpec | None, by: Sequence[str] = (), top: int = 50
) -> tuple[int, dict[str, FacetRows]]:
    """Cells matching ``spec`` and, per facet (``DEFAULT_FACETS`` when ``by`` is empty), the
    ``top`` values as ``(id, label, count)`` rows, most frequent first; term ids labelled."""
    names = list(by) or list(DEFAULT_FACETS)
    unknown = [b for b in names if b not in schema.FACETS]
    if unknown:
        msg = f"cannot count by {unknown}; choose among {sorted(schema.FACETS)}"
        raise InvalidQueryError(msg)
    flt = store_filter(spec)
    facets: dict[str, FacetRows] = {}
    for name in names:
        field = schema.FACETS[name]
        counts = store.facet(field, flt, limit=top)
        is_term = field in schema.TERM_KINDS
        facets[name] = [(v, term_label(v) if is_term else v, n) for v, n in counts.items()]
    return store.count(flt), facets


def limits_of(settings: Settings) -> core_query.QueryLimits:
    """The per-request limits the settings name (``CELLSEARCH_MAX_K``, ``..._QUERY_CELLS``)."""
    return core_query.QueryLimits(max_k=settings.max_k, max_query_cells=settings.max_query_cells)


def search(
    store: CellStore,
    *,
    vectors: np.ndarray | None,
    cells: Sequence[CellRef],
    k: int,
    spec: FilterSpec | None,
    limits: core_query.QueryLimits,
    with_vectors: bool,
) -> list[list[Hit]]:
    """Hits per query cell: by vector (given or embedded), else by stored cell (never itself)."""
    if vectors is None:
        return core_query.search_cells(
            store, list(cells), k, spec, limits=limits, with_vectors=with_vectors
        )
    return core_query.search_vectors(
        store, vectors, k, spec, limits=limits, with_vectors=with_vectors
    )


def search_centroid(
    store: CellStore,
    *,
    vectors: np.ndarray | None,
    cells: Sequence[CellRef],
    k: int,
    spec: FilterSpec | None,
    limits: core_query.QueryLimits,
    with_vectors: bool,
) -> core_query.CentroidResult:
    """Hits around the query population's centroid, with its coherence (see ``query``)."""
    return core_query.search_centroid(
        store,
        k,
        spec,
        cells=list(cells),
        vectors=vectors,
        limits=limits,
        coherence_k=min(k, 100),
        with_vectors=with_vectors,
    )


@dataclass(frozen=True)
class Reference:
    """What annotation precomputes per reference: the calibration, the label space, the
    labels of points met so far, and the in-memory kNN index (``knn``) when it has one."""

    calibration: core_annotate.Calibration
    space: core_annotate.LabelSpace
    labels: core_annotate.PointLabels
    size: int
    index: IndexSlot
    voters: SearchFilter | None = None


class Annotator:
    """Annotation with the calibration, label space and kNN index cached per reference
    filter and rebuilt when the reference's size changes (a new ingestion or a deletion), so
    the cache follows the atlas; one entry per filter, so a rebuilt index frees the old."""

    def __init__(
        self,
        config: core_annotate.AnnotationConfig | None = None,
        held_out: Callable[[], Mapping[str, Any] | None] | None = None,
    ) -> None:
        self.config = config or core_annotate.AnnotationConfig()
        #: The encoder's held-out-study distances (see ``Calibration.from_held_out``).
        self._held_out = held_out
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()  # one reference built at a time, never twice
        self._cache: dict[tuple[str, int], Reference] = {}

    def reference(
        self, store: Any, reference: Any, config: core_annotate.AnnotationConfig
    ) -> Reference:
        voters = core_annotate.reference_filter(config, reference, store=store)
        size = store.count(voters)
        if size < 2:
            text = (
                f"the reference is empty ({size} labelled cell(s) pass the filter; at least 2 "
                "are needed): ingest labelled cells first or widen the filter"
            )
            raise EmptyReferenceError(text)
        key = (repr(voters), config.rep_neighbours)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached.size == size:
            return cached
        with self._build_lock:
            with self._lock:
                cached = self._cache.get(key)
            if cached is not None and cached.size == size:
                return cached
            entry = self._build(store, reference, voters, size, config)
            with self._lock:
                self._cache[key] = entry
        return entry

    def _build(
        self,
        store: CellStore,
        reference: SearchFilter | None,
        voters: SearchFilter | None,
        size: int,
        config: core_annotate.AnnotationConfig,
    ) -> Reference:
        space = core_annotate.label_space(
            store.facet("cell_type_id", voters, limit=100_000),
            floor=config.floor,
            safelist=config.safelist,
            blocklist=config.blocklist,
        )
        slot = IndexSlot()
        if 0 < size <= config.index_max_cells and faiss_available():
            slot.build(
                lambda: ReferenceIndex.from_store(store, voters, space.codes, ef=config.index_ef),
                background=size > config.index_sync_max_cells,
            )
        sample = _sample_refs(store, voters, min(CALIBRATION_SAMPLE, size))
        calibration = core_annotate.calibrate(
            store, sample, config=config, reference=reference, space=space
        )
        if self._held_out is not None:
            calibration = core_annotate.wider_calibration(
                calibration, self._held_out(), self.config.unknown_quantile
            )
        labels = core_annotate.PointLabels(store, space)
        return Reference(calibration, space, labels, size, slot, voters)

    def wait_for_index(self, timeout_s: float | None = None) -> bool:
        """Block until every background index build ends; True when each reference has one."""
        with self._lock:
            slots = [entry.index for entry in self._cache.values()]
        return all(slot.wait(timeout_s) is not None for slot in slots)

    def calibration(
        self, store: Any, reference: Any, config: core_annotate.AnnotationConfig
    ) -> core_annotate.Calibration:
        return self.reference(store, reference, config).calibration

    def annotate(
        self,
        store: Any,
        vectors: np.ndarray,
        k: int,
        spec: FilterSpec | None,
        *,
        with_neighbours: bool = False,
        unknown_quantile: float | None = None,
        session: dict[Any, Reference] | None = None,
    ) -> core_annotate.Annotations:
        """Annotate ``vectors`` against the (filtered) reference.

        ``k``: candidate neighbours per query cell (0: the configured number).
        ``session``: a dict the caller keeps for one job (a streamed request); the reference is
        resolved (its size counted, a store scan) once per job instead of once per batch, and
        every batch of the job votes against the same reference.
        """
        reference = store_filter(spec)
        config = self._config(k, unknown_quantile, with_neighbours=with_neighbours)
        ref = self._resolve(store, reference, config, session)
        return core_annotate.annotate(
            store,
            vectors,
            ref.calibration,
            config=config,
            reference=reference,
            space=ref.space,
            labels=ref.labels,
            index=ref.index.index,
            voters=ref.voters,
        )

    def _resolve(
        self,
        store: Any,
        reference: SearchFilter | None,
        config: core_annotate.AnnotationConfig,
        session: dict[Any, Reference] | None,
    ) -> Reference:
        if session is None:
            return self.reference(store, reference, config)
        key = (repr(reference), config.rep_neighbours)
        if key not in session:
            session[key] = self.reference(store, reference, config)
        return session[key]

    def _config(
        self, k: int, unknown_quantile: float | None, *, with_neighbours: bool = False
    ) -> core_annotate.AnnotationConfig:
        """The configuration of one request (``k`` 0: the configured k)."""
        k = k or self.config.k
        return replace(
            self.config,
            k=k,
            rep_neighbours=min(self.config.rep_neighbours, k),
            with_neighbours=with_neighbours,
            unknown_quantile=unknown_quantile or self.config.unknown_quantile,
        )

    def parameters(
        self,
        store: Any,
        k: int,
        spec: FilterSpec | None,
        *,
        unknown_quantile: float | None = None,
        session: dict[Any, Reference] | None = None,
    ) -> dict[str, str]:
        """How the annotation is made, for a reply (and the CLI's ``uns``)."""
        reference = store_filter(spec)
        config = self._config(k, unknown_quantile)
        ref = self._resolve(store, reference, config, session)
        cal = ref.calibration
        on_index = ref.index.index is not None
        return {
            "k": str(config.k),
            "knn": "in-memory index" if on_index else "store",
            "ef": str(config.index_ef if on_index else config.ef or ""),
            "min_confidence": str(config.min_confidence),
            "per_study": str(config.per_study),
            "max_distance_ratio": str(config.max_distance_ratio),
            "rep_neighbours": str(config.rep_neighbours),
            "unknown_quantile": str(config.unknown_quantile),
            "unknown_threshold": f"{cal.threshold(config.unknown_quantile):.6g}",
            "calibration": "cross-study" if cal.cross_study else "leave-one-out",
            "floor": "cellxgene high-level cell types"
            if config.floor is None
            else ",".join(config.floor),
            "weights": f"1/(distance+{config.eps:g})",
        }


def _sample_refs(store: Any, reference: Any, n: int) -> list[tuple[str, str]]:
    """About ``n`` reference cells, gathered around random directions (the store has no
    random sampling; spread directions reach every region of the unit sphere's used part)."""
    rng = np.random.default_rng(0)
    dim = DIM
    directions = rng.normal(size=(_SAMPLE_DIRECTIONS, dim)).astype(np.float32)
    per = max(1, min(n, -(-n // _SAMPLE_DIRECTIONS) * 2))
    refs: dict[tuple[str, str], None] = {}
    for hits in store.search(directions, per, reference):
        for h in hits:
            refs[(h.dataset_id, h.cell_id)] = None
    return list(refs)[:n]
