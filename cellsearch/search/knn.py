"""An in-memory HNSW over a reference's vectors: annotation's bulk kNN.

Annotation asks for k candidate neighbours (100 by default) of thousands of cells at once,
always against the same reference. Through the store that walk runs one query at a time on float
vectors at ef 256 (about 1,500 cells/s at 100k cells on 2 cores, and the engine holds the GIL
while it searches). A FAISS HNSW graph over the same vectors, built once per reference and
atlas size, answers the same queries with recall@50 0.989 at ef 80 at about 12,000 cells/s
on both cores (benchmarks/bench_annotate.py), and carries each point's label code, so the
vote reads no payload at all. It costs the vectors and the graph in memory (~650 B a cell),
so it is built only for references up to ``AnnotationConfig.index_max_cells``; bigger ones use
the store's kNN.

FAISS is scGPT's index for the same job (a peer), with wheels for every platform.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from vectorstore import CellStore, SearchFilter

log = logging.getLogger(__name__)

#: References up to this many cells are searched exactly (a flat scan: as fast as the graph
#: there, and deterministic).
EXACT_MAX_CELLS = 10_000
#: HNSW graph degree and build breadth: recall@50 0.992 at ef 96 on the 100k benchmark
#: reference (M 32 gave 0.994 for a 6% slower search and the same build time).
GRAPH_M = 16
EF_CONSTRUCTION = 100


@dataclass(frozen=True)
class Neighbours:
    """A batch's kNN: ``(n, k)`` point ids (``None`` pads), label codes (-1 pads and
    non-voting labels), cosine distances (``inf`` pads) and study codes (-1 pads)."""

    ids: np.ndarray
    codes: np.ndarray
    distances: np.ndarray
    studies: np.ndarray


def faiss_available() -> bool:
    """True when the FAISS module imports (the platform extra installs it)."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


class ReferenceIndex:
    """Point ids, label codes, study codes and an HNSW graph over unit vectors (inner
    product = cosine); a flat exact index for references of at most ``EXACT_MAX_CELLS``."""

    def __init__(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        codes: np.ndarray,
        *,
        studies: np.ndarray | None = None,
        ef: int = 80,
    ) -> None:
        import faiss

        mat = np.ascontiguousarray(vectors, dtype=np.float32)
        studies = np.zeros(len(ids), np.int32) if studies is None else studies
        if mat.ndim != 2 or len({len(mat), len(ids), len(codes), len(studies)}) != 1:
            msg = (
                f"{len(ids)} ids, {len(codes)} codes, {len(studies)} studies and vectors of "
                f"shape {mat.shape}"
            )
            raise ValueError(msg)
        started = time.perf_counter()
        index: Any
        if len(mat) <= EXACT_MAX_CELLS:
            index = faiss.IndexFlatIP(mat.shape[1])
            index.add(mat)
        else:
            index = faiss.IndexHNSWFlat(mat.shape[1], GRAPH_M, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = EF_CONSTRUCTION
            index.add(mat)
            index.hnsw.efSearch = ef  # FAISS searches with max(efSearch, k)
        self._index = index
        self.ef = ef
        self.ids = np.asarray(list(ids), dtype=object)
        self.codes = np.asarray(codes, dtype=np.int32)
        self.studies = np.asarray(studies, dtype=np.int32)
        self.build_seconds = time.perf_counter() - started

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_store(
        cls,
        store: CellStore,
        reference: SearchFilter | None,
        codes_of: Any,
        *,
        ef: int = 80,
    ) -> ReferenceIndex:
        """Every reference cell of ``store`` (``codes_of(labels) -> int32 codes``)."""
        ids, vectors, fields = store.scan(reference, ["cell_type_id", "study_id"])
        codes = np.asarray(codes_of(fields["cell_type_id"]), dtype=np.int32)
        _, studies = np.unique(np.asarray(fields["study_id"], dtype=object), return_inverse=True)
        return cls(ids, vectors, codes, studies=studies.astype(np.int32), ef=ef)

    def search(self, vectors: np.ndarray, k: int) -> Neighbours:
        """The ``k`` nearest reference cells of each row of ``vectors`` (unit rows)."""
        queries = np.asarray(vectors, dtype=np.float32)
        queries = np.ascontiguousarray(queries / np.linalg.norm(queries, axis=1, keepdims=True))
        sims, rows = self._index.search(queries, k)
        missing = rows < 0
        safe = np.where(missing, 0, rows)
        ids = self.ids[safe]
        ids[missing] = None
        codes = np.where(missing, -1, self.codes[safe]).astype(np.int32)
        studies = np.where(missing, -1, self.studies[safe]).astype(np.int32)
        # cosine distance of unit vectors; float32 rounding may dip a hair below 0
        distances = np.where(missing, np.inf, np.maximum(1.0 - sims.astype(np.float64), 0.0))
        return Neighbours(ids=ids, codes=codes, distances=distances, studies=studies)


class IndexSlot:
    """One reference's index, built in the caller's thread when small, else in the
    background (annotation uses the store's kNN until it is ready)."""

    def __init__(self) -> None:
        self._index: ReferenceIndex | None = None
        self._thread: threading.Thread | None = None

    @property
    def index(self) -> ReferenceIndex | None:
        """The built index, or None while it is being built (or could not be)."""
        return self._index

    def build(self, make: Any, *, background: bool) -> None:
        """Build with ``make() -> ReferenceIndex``, now or in a daemon thread."""
        if not background:
            self._index = make()
            return

        def run() -> None:
            try:
                self._index = make()
            except Exception:  # the store's kNN keeps serving annotation
                log.exception("building the annotation index failed; using the store's kNN")

        self._thread = threading.Thread(target=run, name="cellsearch-annotation-index", daemon=True)
        self._thread.start()

    def wait(self, timeout_s: float | None = None) -> ReferenceIndex | None:
        """Block until a background build ends (tests and benchmarks)."""
        if self._thread is not None:
            self._thread.join(timeout_s)
        return self._index
