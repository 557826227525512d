"""The collection schema and index knobs, in one frozen dataclass shared by both backends."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vectorstore.types import DIM, PAYLOAD_FIELDS

#: Fields whose payload index also gets extra HNSW links per value ("payload-aware" links).
#: Chosen from benchmarks/bench_vectorstore.py (see docs/vectorstore.md): every extra field
#: costs build time (one sub-graph per frequent value); fields left out are still filtered
#: exactly through their keyword index, by a plain scan when the subset is small and by
#: filtered HNSW traversal when it is large.
DEFAULT_HNSW_PAYLOAD_FIELDS: tuple[str, ...] = ()


@dataclass(frozen=True)
class StoreConfig:
    """How the cell collection is laid out and searched.

    Sizes marked ``_kb`` are Qdrant's units (kilobytes of vectors; a 128-d float32 vector is
    0.5 KB, so ``full_scan_threshold_kb=10_000`` is about 20,000 cells).
    """

    dim: int = DIM
    distance: Literal["cosine"] = "cosine"
    hnsw_m: int = 32
    #: 400, not 200: at 1M cells a filter selecting half the atlas (one condition, so
    #: filtered HNSW over a sub-graph with holes where the excluded studies sit) reached
    #: recall@50 0.991 at ef=1024 on this graph and 0.947 on the 200 one (same 1,000
    #: queries), for a 1.37x longer build (docs/vectorstore.md, "1M cells, third session").
    hnsw_ef_construct: int = 400
    #: ef used at query time unless a query passes its own; raised to k when k is larger.
    #: It only matters to unfiltered and broad filtered queries (narrow ones scan exactly);
    #: at 1M cells ef=512 left the half-atlas filter at recall 0.977, 1024 at 0.991.
    search_ef: int = 1024
    #: Per-value graph degree for payload-aware links (None: same as hnsw_m).
    payload_m: int | None = None
    hnsw_payload_fields: tuple[str, ...] = DEFAULT_HNSW_PAYLOAD_FIELDS
    #: Below this many KB of matching vectors (per segment) a filtered query scans the subset
    #: exactly. 50,000 KB is ~100k cells: at 1M cells a 5% tissue filter (~25k cells per
    #: segment) went through filtered HNSW at recall@50 0.10 (ACORN 0.22) and scans exactly
    #: at 1.00 (p50 18 ms under load). Fixed per segment when it is built.
    full_scan_threshold_kb: int = 50_000
    #: A segment is HNSW-indexed once it holds this many KB of vectors (None: Qdrant's default).
    indexing_threshold_kb: int | None = None
    quantization: Literal["none", "int8"] = "int8"
    quantile: float = 0.99
    #: Re-rank quantised candidates with the original float32 vectors (exact final scores).
    rescore: bool = True
    oversampling: float = 2.0
    #: With int8 on, keep original vectors on disk (page cache) and only int8 codes in RAM.
    originals_on_disk: bool = True
    #: ACORN filtered traversal (explores two hops past rejected nodes) for filters selecting
    #: less than this fraction; None: off. Helps mid selectivities above the full-scan
    #: threshold when the field has no payload-aware links.
    acorn_max_selectivity: float | None = None
    #: Keyword payload indexes memory-mapped from disk instead of held on the heap: they are
    #: most of a shard's RAM (~500 B/cell for 13 indexed fields), the page cache keeps the hot
    #: parts.
    payload_index_on_disk: bool = True
    #: Keyword indexes kept on the heap even when ``payload_index_on_disk``: checking a
    #: condition on a memory-mapped index costs ~0.1 us per stored value of the point, so a
    #: conjunction that re-checks a 33-value ancestor list per candidate (lung + ILD with
    #: real UBERON/MONDO ancestors) took 20-55 ms at 40k cells instead of 3-4 ms on the
    #: heap. Single-valued ``*_id`` fields cost ~10 B/cell each on the heap.
    heap_index_fields: tuple[str, ...] = ()
    #: Send conjunctions (two or more conditions) through the payload-group table as one
    #: condition on the group field (see ``vectorstore.groups``); False sends every filter
    #: to Qdrant as it is. A single condition always goes as it is: Qdrant walks its one
    #: posting list with nothing to re-check (at 1M cells a 5% tissue filter took 7.9 ms
    #: as is, 12.4 ms as 1,845 group ids). Query time.
    compile_filters: bool = True
    #: ... and only while the filter matches at most this many groups: a broad filter
    #: (half the atlas: 35k groups at 1M) took 2-3x longer as group ids.
    compile_max_groups: int = 10_000
    #: Filters matching at least this share of the payload groups are answered by an
    #: unfiltered search for ``2k / share`` candidates kept to the filter (filtered HNSW
    #: when fewer than k survive); None (default): always filtered HNSW. A recall knob: at
    #: 1M cells, on the ef_construct 200 graph, a 54% filter went from recall 0.967 to 0.982
    #: but p50 11.7 -> 16.0 ms; the 400 graph gets 0.991 without it (docs/vectorstore.md).
    #: Needs the group table.
    post_filter_min_share: float | None = None
    #: Build indexes (``optimize``) on a copy in a subprocess and swap it in, so the
    #: process keeps answering (qdrant-edge holds the GIL for a whole in-process build; see
    #: ``vectorstore.offline``); False: build in-process, blocking this process meanwhile.
    build_in_subprocess: bool = True
    #: Target number of segments (0: Qdrant picks from the CPU count).
    segments: int = 0
    #: Search threads of the embedded engine (None: from the CPU count; qdrant-edge starts
    #: 8 on 2 cores, and pinning 2 changed neither latency nor 1-4 client throughput at 1M).
    search_threads: int | None = None

    def __post_init__(self) -> None:
        if self.dim < 1:
            msg = f"StoreConfig.dim must be positive, got {self.dim}"
            raise ValueError(msg)
        if self.distance != "cosine":
            msg = f"StoreConfig.distance {self.distance!r} is not supported; cells use cosine"
            raise ValueError(msg)
        if self.quantization not in ("none", "int8"):
            msg = f"StoreConfig.quantization must be 'none' or 'int8', got {self.quantization!r}"
            raise ValueError(msg)
        for name in ("hnsw_m", "hnsw_ef_construct", "search_ef"):
            if getattr(self, name) < 1:
                msg = f"StoreConfig.{name} must be positive, got {getattr(self, name)}"
                raise ValueError(msg)
        for name in ("hnsw_payload_fields", "heap_index_fields"):
            unknown = sorted(set(getattr(self, name)) - set(PAYLOAD_FIELDS))
            if unknown:
                msg = f"StoreConfig.{name} has unknown fields {unknown}"
                raise ValueError(msg)

    def index_on_disk(self, field: str) -> bool:
        """Whether ``field``'s keyword index is memory-mapped from disk (else on the heap)."""
        return self.payload_index_on_disk and field not in self.heap_index_fields

    @property
    def int8(self) -> bool:
        return self.quantization == "int8"


#: Keyword payload indexes created on every new collection: every field a filter may use.
INDEXED_FIELDS: tuple[str, ...] = PAYLOAD_FIELDS
