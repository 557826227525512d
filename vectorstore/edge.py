"""The embedded backend: Qdrant's own engine in-process through ``qdrant-edge-py`` (0.9.0).

No server to start: a shard is a folder (segments, WAL, payload indexes, HNSW graph).
The library is young, so this module wraps it thinly: every call it makes is one the
congruence tests exercise. One process may open a shard at a time.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import numpy as np
import qdrant_edge as qe

from vectorstore.base import (
    CellRef,
    StoreLockedError,
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
from vectorstore.groups import FILE_NAME as GROUPS_FILE
from vectorstore.groups import GROUP_FIELD, PayloadGroups, ids_contain, shared_fields
from vectorstore.offline import Gate, build_copy, recover, swap_in
from vectorstore.types import PAYLOAD_FIELDS, CellRecord, Hit, SearchFilter, point_id

#: Points per engine call. Each call holds the GIL throughout (70-80 ms for 4,096 points,
#: several times that on a loaded machine), stalling the serving threads of the process; 1,024
#: keeps each hold near 20 ms for the same total work.
UPSERT_BATCH = 1024
#: Post-filtering asks for POST_FILTER_OVERSAMPLING * k / share unfiltered candidates;
#: past POST_FILTER_MAX_CANDIDATES of them, filtered HNSW is used instead.
POST_FILTER_OVERSAMPLING = 2
POST_FILTER_MAX_CANDIDATES = 4096
SCROLL_PAGE = 1024

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _reading(
    method: Callable[Concatenate[EdgeStore, _P], _R],
) -> Callable[Concatenate[EdgeStore, _P], _R]:
    """Run a read while no index swap holds the shard (many reads at once)."""

    @functools.wraps(method)
    def gated(self: EdgeStore, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self._gate.shared():
            return method(self, *args, **kwargs)

    return gated


def _writing(
    method: Callable[Concatenate[EdgeStore, _P], _R],
) -> Callable[Concatenate[EdgeStore, _P], _R]:
    """Run a write one at a time, and never during an index build (which pauses writes)."""

    @functools.wraps(method)
    def gated(self: EdgeStore, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self._writes, self._gate.shared():
            return method(self, *args, **kwargs)

    return gated


def to_edge_filter(flt: SearchFilter | None) -> qe.Filter | None:
    """Our filter as Qdrant's: one ``MatchAny`` condition per field."""
    if flt is None or flt.is_empty:
        return None
    must: list[qe.ConditionType] = [
        qe.FieldCondition(key=k, match=qe.MatchAny(list(v))) for k, v in flt.must.items()
    ]
    must_not: list[qe.ConditionType] = [
        qe.FieldCondition(key=k, match=qe.MatchAny(list(v))) for k, v in flt.must_not.items()
    ]
    return qe.Filter(must=must or None, must_not=must_not or None)


def _load_shard(path: Path) -> qe.EdgeShard:
    """Open an existing shard; a clear :class:`StoreLockedError` when another process has it."""
    try:
        return qe.EdgeShard.load(str(path))
    except Exception as exc:
        if "WouldBlock" not in str(exc):
            raise
        msg = (
            f"the embedded store {path} is open in another process (qdrant-edge lets one "
            "process own a shard): stop the other `cellsearch serve`/`worker` using it, or "
            "point this one at another CELLSEARCH_STORE_PATH (or at a Qdrant server with "
            "CELLSEARCH_QDRANT_URL to share one store between processes)"
        )
        raise StoreLockedError(msg) from None


def edge_config(cfg: StoreConfig) -> qe.EdgeConfig:
    """The shard configuration for a :class:`StoreConfig`."""
    quant = None
    if cfg.int8:
        quant = qe.ScalarQuantizationConfig(
            type=qe.ScalarType.Int8, quantile=cfg.quantile, always_ram=True
        )
    vectors = qe.EdgeVectorParams(
        size=cfg.dim,
        distance=qe.Distance.Cosine,
        on_disk=bool(cfg.int8 and cfg.originals_on_disk),
    )
    hnsw = qe.HnswIndexConfig(
        m=cfg.hnsw_m,
        ef_construct=cfg.hnsw_ef_construct,
        full_scan_threshold=cfg.full_scan_threshold_kb,
        payload_m=cfg.payload_m,
    )
    optimizers = qe.EdgeOptimizersConfig(
        indexing_threshold=cfg.indexing_threshold_kb,
        default_segment_number=cfg.segments or None,
    )
    return qe.EdgeConfig(
        vectors=vectors,
        hnsw_config=hnsw,
        quantization_config=quant,
        optimizers=optimizers,
        max_search_threads=cfg.search_threads,
        # payload on disk but memory-mapped and kept in the page cache: reading the payloads
        # of 50 hits costs ~0.5 ms this way, several ms from "cold" storage
        payload_memory=qe.Memory.Cached,
    )


class EdgeStore:
    """A :class:`~vectorstore.base.CellStore` over one qdrant-edge shard folder."""

    def __init__(self, path: Path, config: StoreConfig | None = None) -> None:
        self.config = config or StoreConfig()
        self.path = Path(path)
        # reads share the gate; an index swap takes it alone for well under a second. Writes
        # go one at a time and pause for a whole build (see vectorstore.offline).
        self._gate = Gate()
        self._writes = threading.RLock()
        recover(self.path)  # an index swap interrupted by a crash
        existing = (self.path / "segments").is_dir()
        if existing:
            self._shard = _load_shard(self.path)
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            self._shard = qe.EdgeShard.create(str(self.path), edge_config(self.config))
            for name in INDEXED_FIELDS:
                params = qe.KeywordIndexParams(
                    enable_hnsw=name in self.config.hnsw_payload_fields,
                    is_tenant=False,
                    on_disk=self.config.index_on_disk(name),
                )
                self._shard.update(qe.UpdateOperation.create_field_index(name, params))
            self._create_group_index()
        # A shard made before payload groups existed gets its table now (one scroll).
        migrate = existing and not (self.path / GROUPS_FILE).exists()
        if migrate:
            self._create_group_index()
        self._groups = PayloadGroups(self.path)
        self._closed = False
        if migrate:
            self._tag_groups()

    def _create_group_index(self) -> None:
        """The integer index on :data:`GROUP_FIELD`, memory-mapped like the keyword indexes.

        On the heap it cost ~40 B/cell (RssAnon 229 vs 191 MB at 1M cells) for no measurable
        gain: a compiled filter is one condition, walked through its posting lists.
        """
        params = qe.IntegerIndexParams(
            lookup=True, range=False, on_disk=self.config.payload_index_on_disk
        )
        self._shard.update(qe.UpdateOperation.create_field_index(GROUP_FIELD, params))

    # -- writes -------------------------------------------------------------
    def upsert(self, records: Sequence[CellRecord]) -> None:
        """Write points with only their ``cell_id``, then each shared payload once per group.

        qdrant-edge 0.9 converts a payload at ~30 us per value when a ``Point`` is built, which
        made full per-point payloads the bottleneck (~2.4k points/s). Every field but
        ``cell_id`` is shared by the cells of one sample and cell type, so those go in one
        ``set_payload`` per distinct group. The point upsert replaces any old payload first,
        so re-ingesting with changed metadata leaves no stale field. Between the two writes a
        point lacks its shared fields (filters skip it); a crash there is repaired by
        re-running the idempotent upsert.
        """
        unique = dedupe_records(records)
        ids = [r.point_id for r in unique]
        cells = [r.cell_id for r in unique]
        vectors = [r.vector for r in unique]
        payloads: list[dict[str, str | list[str]]] = []
        index: dict[tuple[tuple[str, str | tuple[str, ...]], ...], int] = {}
        group = np.empty(len(unique), dtype=np.int64)
        for i, r in enumerate(unique):
            shared = shared_fields(r.full_payload())
            key = tuple(
                (k, tuple(v) if isinstance(v, list) else v) for k, v in sorted(shared.items())
            )
            g = index.get(key)
            if g is None:
                g = index[key] = len(payloads)
                payloads.append(shared)
            group[i] = g
        self._write(ids, cells, vectors, payloads, group)

    def upsert_grouped(
        self,
        dataset_id: str,
        cell_ids: Sequence[str],
        vectors: np.ndarray,
        payloads: Sequence[Mapping[str, str | list[str]]],
        group: np.ndarray,
    ) -> None:
        """The bulk form of :meth:`upsert` for one dataset: no :class:`CellRecord` per cell.

        Cell ``i`` gets ``payloads[group[i]]`` plus its ``dataset_id`` and ``cell_id``: the
        stored points, ids and checks are exactly those of ``upsert`` with the same records
        (a repeated cell id: the last wins), at a fraction of the Python cost per cell, which
        is what bulk ingestion spends its time on.
        """
        cells = [str(c) for c in cell_ids]
        mat = np.asarray(vectors, dtype=np.float32)
        group = np.asarray(group, dtype=np.int64)
        if mat.shape != (len(cells), self.config.dim) or group.shape != (len(cells),):
            msg = (
                f"upsert_grouped: {len(cells)} cell ids need a ({len(cells)}, {self.config.dim}) "
                f"vector matrix and {len(cells)} group indexes, got {mat.shape} and {group.shape}"
            )
            raise ValueError(msg)
        bad = ~np.isfinite(mat).all(axis=1) | ~mat.any(axis=1)
        if bad.any():
            cell = cells[int(np.flatnonzero(bad)[0])]
            msg = f"cell {cell!r}: vector is zero or not finite; cosine needs a direction"
            raise ValueError(msg)
        shared: list[dict[str, str | list[str]]] = []
        for p in payloads:
            if p.get("dataset_id", dataset_id) != dataset_id:
                msg = (
                    f"upsert_grouped: payload dataset_id={p['dataset_id']!r} disagrees with "
                    f"the dataset {dataset_id!r} being written"
                )
                raise ValueError(msg)
            shared.append({**shared_fields(p), "dataset_id": dataset_id})
        keep = _last_of_each(cells)
        if keep is not None:
            cells = [cells[i] for i in keep]
            mat, group = mat[keep], group[keep]
        ids = [point_id(dataset_id, c) for c in cells]
        self._write(ids, cells, mat, shared, group)

    @_writing
    def _write(
        self,
        ids: Sequence[str],
        cells: Sequence[str],
        vectors: Sequence[np.ndarray] | np.ndarray,
        payloads: Sequence[Mapping[str, str | list[str]]],
        group: np.ndarray,
    ) -> None:
        # the table first: a crash after it leaves an unused group, never an unknown one
        gids = self._groups.add(payloads)
        tagged: list[dict[str, object]] = [
            {**p, GROUP_FIELD: g} for p, g in zip(payloads, gids, strict=True)
        ]
        for start in range(0, len(ids), UPSERT_BATCH):
            stop = start + UPSERT_BATCH
            batch_ids = ids[start:stop]
            rows = np.asarray(vectors[start:stop], dtype=np.float32).tolist()
            points = [
                qe.Point(pid, row, {"cell_id": cell})
                for pid, row, cell in zip(batch_ids, rows, cells[start:stop], strict=True)
            ]
            self._shard.update(qe.UpdateOperation.upsert_points(points))
            batch_group = group[start:stop]
            order = np.argsort(batch_group, kind="stable")
            bounds = np.flatnonzero(np.diff(batch_group[order])) + 1
            for members in np.split(order, bounds):
                if members.size and tagged[int(batch_group[members[0]])]:
                    self._shard.update(
                        qe.UpdateOperation.set_payload(
                            [batch_ids[i] for i in members], tagged[int(batch_group[members[0]])]
                        )
                    )

    @_writing
    def delete_dataset(self, dataset_id: str) -> int:
        flt = SearchFilter(must={"dataset_id": [dataset_id]})
        n = self._count(flt)
        if n:
            edge_filter = to_edge_filter(flt)
            assert edge_filter is not None  # a non-empty filter always translates
            self._shard.update(qe.UpdateOperation.delete_points_by_filter(edge_filter))
        self._groups.remove_dataset(dataset_id)
        return n

    def optimize(self) -> None:
        """Build the indexes of what was written since the last build.

        With ``build_in_subprocess`` (the default) on a copy in another process, swapped in
        at the end: searches keep being answered throughout and wait only for the swap,
        writes wait for the whole build (see ``vectorstore.offline``).
        """
        if not self.config.build_in_subprocess:
            with self._writes, self._gate.shared():
                self._shard.optimize()
            return
        with self._writes:
            with self._gate.shared():
                stats = self._shard.info()
                if int(stats.indexed_vectors_count) >= int(stats.points_count):
                    return  # every vector is in a graph already: nothing worth a copy
                self._shard.flush()
            built = build_copy(self.path)
            with self._gate.exclusive():
                self._shard.close()
                try:
                    swap_in(self.path, built)
                finally:
                    recover(self.path)
                    self._shard = _load_shard(self.path)

    def _tag_groups(self) -> int:
        """Tag every point with its payload group (a shard made before payload groups).

        Scrolls every point once and tags each group of identical shared payloads with one
        ``set_payload``, so it costs about a scroll plus ~0.2 ms per group. Safe to re-run;
        returns the number of groups.
        """
        members: dict[int, list[qe.PointId]] = {}
        offset = None
        while True:
            recs, offset = self._shard.scroll(
                qe.ScrollRequest(offset=offset, limit=SCROLL_PAGE * 8, with_payload=True)
            )
            # one add per page: the table is fsynced once per page, not once per new group
            gids = self._groups.add([shared_fields(rec.payload or {}) for rec in recs])
            for rec, gid in zip(recs, gids, strict=True):
                members.setdefault(gid, []).append(rec.id)
            if offset is None:
                break
        for gid, ids in members.items():
            self._shard.update(qe.UpdateOperation.set_payload(ids, {GROUP_FIELD: gid}))
        return len(members)

    # -- reads --------------------------------------------------------------
    def _compile(self, flt: SearchFilter | None) -> qe.Filter | None:
        """A conjunction as one condition on :data:`GROUP_FIELD` when the group table allows.

        Evaluated on the in-memory table of distinct payloads (see ``vectorstore.groups``);
        no matching group becomes an id no group has, so Qdrant answers from its index.
        Single conditions, filters on ``cell_id`` and filters matching more than
        ``compile_max_groups`` groups go as they are (see :class:`StoreConfig`).
        """
        if flt is None or flt.is_empty:
            return None
        if (
            not self.config.compile_filters
            or len(flt.must) + len(flt.must_not) < 2
            or not self._groups.compilable(flt)
        ):
            return to_edge_filter(flt)
        ids = self._groups.select(flt)
        if ids.size > self.config.compile_max_groups:
            return to_edge_filter(flt)
        match = qe.MatchAny(ids.tolist() or [-1])
        return qe.Filter(must=[qe.FieldCondition(key=GROUP_FIELD, match=match)])

    def _params(self, k: int, ef: int | None, oversampling: float | None = None) -> qe.SearchParams:
        quant = None
        if self.config.int8:
            quant = qe.QuantizationSearchParams(
                rescore=self.config.rescore, oversampling=oversampling or self.config.oversampling
            )
        acorn = None
        if self.config.acorn_max_selectivity is not None:
            acorn = qe.AcornSearchParams(
                enable=True, max_selectivity=self.config.acorn_max_selectivity
            )
        return qe.SearchParams(
            hnsw_ef=max(ef or self.config.search_ef, k), quantization=quant, acorn=acorn
        )

    @_reading
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
        out: list[list[Hit] | None] = [None] * len(mat)
        payload = True if fields is None else qe.PayloadSelector.Include(list(fields))
        broad = self._broad_groups(filter, k)
        if broad is not None:
            for i, hits in enumerate(self._post_filtered(mat, k, broad, with_vectors, ef)):
                out[i] = hits
        todo = [i for i, hits in enumerate(out) if hits is None]
        if todo:
            flt = self._compile(filter)
            params = self._params(k, ef)
            requests = [
                qe.QueryRequest(
                    limit=k,
                    query=qe.Query.Nearest(mat[i].tolist()),
                    filter=flt,
                    with_payload=payload,
                    with_vector=with_vectors,
                    params=params,
                )
                for i in todo
            ]
            results = self._shard.query_batch(qe.QueryBatchRequest(requests))
            for i, res in zip(todo, results, strict=True):
                out[i] = [make_hit(p.score, p.payload, p.vector) for p in res]
        return [hits or [] for hits in out]

    def _broad_groups(self, flt: SearchFilter | None, k: int) -> tuple[np.ndarray, int] | None:
        """The matching group ids (sorted) and how many unfiltered candidates to ask for, when
        a filter is broad enough to post-filter. Ids rather than table rows: they keep their
        meaning if another thread changes the table during this search.

        Off unless ``post_filter_min_share`` is set: at 1M cells, on an ef_construct 200
        graph, a 54% filter kept recall at 0.94-0.98 through filtered HNSW whatever the ef; an
        unfiltered search for ``POST_FILTER_OVERSAMPLING * k / share`` candidates kept to the
        filter reached 0.98-0.99 but took ~35% longer. The default 400 graph reaches 0.991
        through filtered HNSW (docs/vectorstore.md).
        """
        share_min = self.config.post_filter_min_share
        if flt is None or flt.is_empty or share_min is None:
            return None
        if not self._groups.compilable(flt) or not len(self._groups):
            return None
        ids, share = self._groups.select_sorted(flt)
        limit = math.ceil(POST_FILTER_OVERSAMPLING * k / max(share, 1e-9))
        if share < share_min or limit > POST_FILTER_MAX_CANDIDATES:
            return None
        return ids, limit

    def _post_filtered(
        self,
        mat: np.ndarray,
        k: int,
        broad: tuple[np.ndarray, int],
        with_vectors: bool,  # noqa: FBT001 - private helper
        ef: int | None,
    ) -> list[list[Hit] | None]:
        """Unfiltered candidates kept to the filter's groups; None where fewer than k match.

        The candidates carry only their group id; the kept points' payloads are read in one
        ``retrieve``. A query whose neighbourhood lies outside the filter comes back None
        and goes through filtered HNSW instead, so every query still gets k hits.
        """
        matching, limit = broad
        # the candidates already oversample k: rescoring twice as many would double the
        # original vectors read from disk for nothing
        params = self._params(limit, max(ef or self.config.search_ef // 2, limit), oversampling=1.0)
        requests = [
            qe.QueryRequest(
                limit=limit,
                query=qe.Query.Nearest(row.tolist()),
                with_payload=qe.PayloadSelector.Include([GROUP_FIELD]),
                with_vector=False,
                params=params,
            )
            for row in mat
        ]
        kept: list[list[tuple[qe.PointId, float]] | None] = []
        for res in self._shard.query_batch(qe.QueryBatchRequest(requests)):
            gids = np.fromiter(
                ((p.payload or {}).get(GROUP_FIELD, -1) for p in res), np.int64, len(res)
            )
            keep = np.flatnonzero(ids_contain(matching, gids))[:k]
            kept.append([(res[i].id, res[i].score) for i in keep] if keep.size == k else None)
        wanted = [pid for rows in kept if rows for pid, _ in rows]
        if not wanted:
            return kept  # type: ignore[return-value]
        records = self._shard.retrieve(wanted, with_payload=True, with_vector=with_vectors)
        by_id = {str(r.id): r for r in records}
        # a point deleted between the two calls (a dataset delete running now) is left out
        return [
            None
            if rows is None
            else [
                make_hit(score, by_id[str(pid)].payload, by_id[str(pid)].vector)
                for pid, score in rows
                if str(pid) in by_id
            ]
            for rows in kept
        ]

    @_reading
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
        flt = self._compile(filter)
        params = self._params(k, ef)
        if exact_vectors and self.config.int8:
            params = qe.SearchParams(
                hnsw_ef=params.hnsw_ef,
                quantization=qe.QuantizationSearchParams(ignore=True),
                acorn=params.acorn,
            )
        requests = [
            qe.QueryRequest(
                limit=k,
                query=qe.Query.Nearest(row.tolist()),
                filter=flt,
                with_payload=False,
                with_vector=False,
                params=params,
            )
            for row in mat
        ]
        results = self._shard.query_batch(qe.QueryBatchRequest(requests))
        return ids_and_distances(results, k, lambda p: p.id, lambda p: p.score)

    @_reading
    def payload_values(
        self, point_ids: Sequence[object], fields: Sequence[str]
    ) -> dict[str, list[str]]:
        if not point_ids:
            return {f: [] for f in fields}
        recs = self._shard.retrieve(
            [str(i) for i in point_ids],
            with_payload=qe.PayloadSelector.Include(list(fields)),
            with_vector=False,
        )
        return payload_columns(point_ids, recs, fields)

    @_reading
    def scan(
        self, filter: SearchFilter | None, fields: Sequence[str]
    ) -> tuple[list[str], np.ndarray, dict[str, list[str]]]:
        flt = self._compile(filter)

        def fetch(offset: Any) -> tuple[Sequence[Any], Any]:
            return self._shard.scroll(
                qe.ScrollRequest(
                    offset=offset,
                    limit=SCROLL_PAGE * 8,
                    filter=flt,
                    with_payload=qe.PayloadSelector.Include(list(fields)),
                    with_vector=True,
                )
            )

        return collect_scan(fetch, fields, self.config.dim)

    @_reading
    def retrieve(self, cells: Sequence[CellRef], *, with_vectors: bool = True) -> list[Hit]:
        pairs, bare = split_refs(cells)
        found: list[Hit] = []
        if pairs:
            ids: list[qe.PointId] = [point_id(d, c) for d, c in pairs]
            recs = self._shard.retrieve(ids, with_payload=True, with_vector=with_vectors)
            found.extend(make_hit(1.0, r.payload, r.vector) for r in recs)
        if bare:
            flt = to_edge_filter(SearchFilter(must={"cell_id": bare}))
            offset = None
            while True:
                recs, offset = self._shard.scroll(
                    qe.ScrollRequest(
                        offset=offset,
                        limit=SCROLL_PAGE,
                        filter=flt,
                        with_payload=True,
                        with_vector=with_vectors,
                    )
                )
                found.extend(make_hit(1.0, r.payload, r.vector) for r in recs)
                if offset is None:
                    break
        return order_hits(cells, found)

    @_reading
    def count(self, filter: SearchFilter | None = None) -> int:
        return self._count(filter)

    def _count(self, filter: SearchFilter | None = None) -> int:
        return int(self._shard.count(qe.CountRequest(exact=True, filter=self._compile(filter))))

    @_reading
    def facet(
        self,
        field: str,
        filter: SearchFilter | None = None,
        limit: int = 1000,
    ) -> dict[str, int]:
        if field not in PAYLOAD_FIELDS:
            msg = f"cannot facet on unknown field {field!r}; fields are {list(PAYLOAD_FIELDS)}"
            raise ValueError(msg)
        resp = self._shard.facet(
            qe.FacetRequest(key=field, limit=limit, exact=True, filter=self._compile(filter))
        )
        return {str(h.value): int(h.count) for h in resp.hits}

    @_reading
    def info(self) -> dict[str, int]:
        """Points, segments and HNSW-indexed vectors: what ``optimize`` changed."""
        inf = self._shard.info()
        return {
            "points": int(inf.points_count),
            "segments": int(inf.segments_count),
            "indexed_vectors": int(inf.indexed_vectors_count),
        }

    def close(self) -> None:
        with self._writes, self._gate.exclusive():
            if not self._closed:
                self._shard.flush()
                self._shard.close()
                self._closed = True

    def __enter__(self) -> EdgeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _last_of_each(cells: Sequence[str]) -> np.ndarray | None:
    """Row indexes keeping the last occurrence of each repeated cell id (None: no repeats)."""
    if len(set(cells)) == len(cells):
        return None
    last = {c: i for i, c in enumerate(cells)}
    return np.fromiter(sorted(last.values()), dtype=np.int64, count=len(last))
