"""The scale backend: a Qdrant server (or cluster) by URL, through ``qdrant-client`` over gRPC.

The same class runs on qdrant-client's *local mode* (``QdrantClient(path=...)``), an
in-Python brute-force engine with the same client API: that is how the tests exercise this
backend without a server. Local mode ignores payload indexes and HNSW parameters (it scans
exactly), so its warnings about them are silenced here; keep local collections small.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from vectorstore.base import (
    CellRef,
    as_query_matrix,
    check_k,
    collect_scan,
    dedupe_records,
    ids_and_distances,
    make_hit,
    order_hits,
    payload_columns,
    split_refs,
)
from vectorstore.config import INDEXED_FIELDS, StoreConfig
from vectorstore.types import PAYLOAD_FIELDS, CellRecord, Hit, SearchFilter, point_id

UPSERT_BATCH = 1024
SCROLL_PAGE = 1024


def to_client_filter(flt: SearchFilter | None) -> qm.Filter | None:
    """Our filter as qdrant-client's: one ``MatchAny`` condition per field."""
    if flt is None or flt.is_empty:
        return None
    must: list[qm.Condition] = [
        qm.FieldCondition(key=k, match=qm.MatchAny(any=list(v))) for k, v in flt.must.items()
    ]
    must_not: list[qm.Condition] = [
        qm.FieldCondition(key=k, match=qm.MatchAny(any=list(v))) for k, v in flt.must_not.items()
    ]
    return qm.Filter(must=must or None, must_not=must_not or None)


@contextmanager
def _quiet_local(local: bool) -> Iterator[None]:  # noqa: FBT001 - private helper
    """Silence local mode's "has no effect" warnings about indexes and search params."""
    if not local:
        yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ll]ocal.*", category=UserWarning)
        yield


class QdrantServerStore:
    """A :class:`~vectorstore.base.CellStore` over a Qdrant collection reached by qdrant-client."""

    def __init__(
        self,
        *,
        url: str | None = None,
        api_key: str | None = None,
        local_path: Path | None = None,
        collection: str = "cells",
        config: StoreConfig | None = None,
        timeout: int = 60,
    ) -> None:
        if (url is None) == (local_path is None):
            msg = "QdrantServerStore needs exactly one of url= (server) or local_path= (local mode)"
            raise ValueError(msg)
        self.config = config or StoreConfig()
        self.collection = collection
        self._local = local_path is not None
        if local_path is not None:
            Path(local_path).mkdir(parents=True, exist_ok=True)
            self._client = QdrantClient(path=str(local_path))
        else:
            self._client = QdrantClient(url=url, api_key=api_key, prefer_grpc=True, timeout=timeout)
        if not self._client.collection_exists(collection):
            self._create()

    def _create(self) -> None:
        cfg = self.config
        quant = None
        if cfg.int8:
            quant = qm.ScalarQuantization(
                scalar=qm.ScalarQuantizationConfig(
                    type=qm.ScalarType.INT8, quantile=cfg.quantile, always_ram=True
                )
            )
        with _quiet_local(self._local):
            self._client.create_collection(
                self.collection,
                vectors_config=qm.VectorParams(
                    size=cfg.dim,
                    distance=qm.Distance.COSINE,
                    on_disk=bool(cfg.int8 and cfg.originals_on_disk),
                ),
                hnsw_config=qm.HnswConfigDiff(
                    m=cfg.hnsw_m,
                    ef_construct=cfg.hnsw_ef_construct,
                    full_scan_threshold=cfg.full_scan_threshold_kb,
                    payload_m=cfg.payload_m,
                ),
                optimizers_config=qm.OptimizersConfigDiff(
                    indexing_threshold=cfg.indexing_threshold_kb,
                    default_segment_number=cfg.segments or None,
                ),
                quantization_config=quant,
                on_disk_payload=True,
            )
            for name in INDEXED_FIELDS:
                self._client.create_payload_index(
                    self.collection,
                    name,
                    qm.KeywordIndexParams(
                        type=qm.KeywordIndexType.KEYWORD,
                        enable_hnsw=name in cfg.hnsw_payload_fields,
                        on_disk=cfg.index_on_disk(name),
                    ),
                    wait=True,
                )

    # -- writes -------------------------------------------------------------
    def upsert(self, records: Sequence[CellRecord]) -> None:
        unique = dedupe_records(records)
        for start in range(0, len(unique), UPSERT_BATCH):
            batch = unique[start : start + UPSERT_BATCH]
            self._client.upsert(
                self.collection,
                points=[
                    qm.PointStruct(
                        id=r.point_id, vector=r.vector.tolist(), payload=r.full_payload()
                    )
                    for r in batch
                ],
                wait=True,
            )

    def upsert_grouped(
        self,
        dataset_id: str,
        cell_ids: Sequence[str],
        vectors: np.ndarray,
        payloads: Sequence[Mapping[str, str | list[str]]],
        group: np.ndarray,
    ) -> None:
        """:meth:`upsert` of the records the grouped form stands for (a server takes whole
        points; the embedded engine writes groups cheaper)."""
        self.upsert(
            [
                CellRecord(dataset_id, str(cell), vectors[i], dict(payloads[int(group[i])]))
                for i, cell in enumerate(cell_ids)
            ]
        )

    def delete_dataset(self, dataset_id: str) -> int:
        flt = SearchFilter(must={"dataset_id": [dataset_id]})
        n = self.count(flt)
        if n:
            client_filter = to_client_filter(flt)
            assert client_filter is not None  # a non-empty filter always translates
            self._client.delete(
                self.collection,
                points_selector=qm.FilterSelector(filter=client_filter),
                wait=True,
            )
        return n

    def optimize(self) -> None:
        """A server indexes in the background; re-enable indexing in case a bulk load paused it."""
        if self._local:
            return
        self._client.update_collection(
            self.collection,
            optimizers_config=qm.OptimizersConfigDiff(
                indexing_threshold=self.config.indexing_threshold_kb or 10_000
            ),
        )

    # -- reads --------------------------------------------------------------
    def info(self) -> dict[str, int]:
        """Points and HNSW-indexed vectors of the collection (the server indexes by itself)."""
        inf = self._client.get_collection(self.collection)
        return {
            "points": int(inf.points_count or 0),
            "indexed_vectors": int(inf.indexed_vectors_count or 0),
        }

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
        check_k(k)
        mat = as_query_matrix(vectors, self.config.dim)
        quant = None
        if self.config.int8:
            quant = qm.QuantizationSearchParams(
                rescore=self.config.rescore, oversampling=self.config.oversampling
            )
        acorn = None
        if self.config.acorn_max_selectivity is not None:
            acorn = qm.AcornSearchParams(
                enable=True, max_selectivity=self.config.acorn_max_selectivity
            )
        params = qm.SearchParams(
            hnsw_ef=max(ef or self.config.search_ef, k), quantization=quant, acorn=acorn
        )
        flt = to_client_filter(filter)
        requests = [
            qm.QueryRequest(
                query=row.tolist(),
                limit=k,
                filter=flt,
                with_payload=True if fields is None else list(fields),
                with_vector=with_vectors,
                params=params,
            )
            for row in mat
        ]
        with _quiet_local(self._local):
            responses = self._client.query_batch_points(self.collection, requests)
        return [[make_hit(p.score, p.payload, p.vector) for p in r.points] for r in responses]

    def search_ids(
        self,
        vectors: np.ndarray,
        k: int,
        filter: SearchFilter | None = None,
        *,
        ef: int | None = None,
        exact_vectors: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        check_k(k)
        mat = as_query_matrix(vectors, self.config.dim)
        quant = None
        if self.config.int8:
            quant = qm.QuantizationSearchParams(
                ignore=exact_vectors,
                rescore=self.config.rescore,
                oversampling=self.config.oversampling,
            )
        params = qm.SearchParams(hnsw_ef=max(ef or self.config.search_ef, k), quantization=quant)
        flt = to_client_filter(filter)
        requests = [
            qm.QueryRequest(
                query=row.tolist(), limit=k, filter=flt, with_payload=False, params=params
            )
            for row in mat
        ]
        with _quiet_local(self._local):
            responses = self._client.query_batch_points(self.collection, requests)
        return ids_and_distances(
            [r.points for r in responses], k, lambda p: str(p.id), lambda p: p.score
        )

    def payload_values(
        self, point_ids: Sequence[object], fields: Sequence[str]
    ) -> dict[str, list[str]]:
        if not point_ids:
            return {f: [] for f in fields}
        recs = self._client.retrieve(
            self.collection, ids=[str(i) for i in point_ids], with_payload=list(fields)
        )
        return payload_columns(point_ids, recs, fields)

    def retrieve(self, cells: Sequence[CellRef], *, with_vectors: bool = True) -> list[Hit]:
        pairs, bare = split_refs(cells)
        found: list[Hit] = []
        if pairs:
            recs = self._client.retrieve(
                self.collection,
                ids=[point_id(d, c) for d, c in pairs],
                with_payload=True,
                with_vectors=with_vectors,
            )
            found.extend(make_hit(1.0, r.payload, r.vector) for r in recs)
        if bare:
            flt = to_client_filter(SearchFilter(must={"cell_id": bare}))
            offset = None
            while True:
                recs, offset = self._client.scroll(
                    self.collection,
                    scroll_filter=flt,
                    limit=SCROLL_PAGE,
                    offset=offset,
                    with_payload=True,
                    with_vectors=with_vectors,
                )
                found.extend(make_hit(1.0, r.payload, r.vector) for r in recs)
                if offset is None:
                    break
        return order_hits(cells, found)

    def scan(
        self, filter: SearchFilter | None, fields: Sequence[str]
    ) -> tuple[list[str], np.ndarray, dict[str, list[str]]]:
        flt = to_client_filter(filter)

        def fetch(offset: Any) -> tuple[Sequence[Any], Any]:
            return self._client.scroll(
                self.collection,
                scroll_filter=flt,
                limit=SCROLL_PAGE * 8,
                offset=offset,
                with_payload=list(fields),
                with_vectors=True,
            )

        return collect_scan(fetch, fields, self.config.dim)

    def count(self, filter: SearchFilter | None = None) -> int:
        res = self._client.count(self.collection, count_filter=to_client_filter(filter), exact=True)
        return int(res.count)

    def facet(
        self, field: str, filter: SearchFilter | None = None, limit: int = 1000
    ) -> dict[str, int]:
        if field not in PAYLOAD_FIELDS:
            msg = f"cannot facet on unknown field {field!r}; fields are {list(PAYLOAD_FIELDS)}"
            raise ValueError(msg)
        resp = self._client.facet(
            self.collection,
            key=field,
            facet_filter=to_client_filter(filter),
            limit=limit,
            exact=True,
        )
        return {str(h.value): int(h.count) for h in resp.hits}

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> QdrantServerStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
