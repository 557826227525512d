"""A typed Python client for the cellsearch gRPC service.

Notebooks use it directly; the CLI is built on it. Queries go in as numpy matrices
(embeddings), sparse count matrices with gene names (expression profiles) or lists of
stored cell ids; answers come back as pandas DataFrames. Errors arrive as
:class:`CellSearchError` carrying the gRPC status code and the server's message (which
says what to change).

    >>> client = CellSearchClient("127.0.0.1:50051", token="...")
    >>> ild_lung = {"tissues": ["lung"], "diseases": ["interstitial lung disease"]}
    >>> hits = client.search(counts, genes=genes, k=20, filter=ild_lung)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import grpc
import numpy as np
import pandas as pd

from cellsearch.platform.errors import JobFailedError
from cellsearch.platform.jobs import DatasetEntry, Job, JobState
from cellsearch.search import frames
from cellsearch.v1 import cellsearch_pb2 as pb
from cellsearch.v1 import cellsearch_pb2_grpc as pb_grpc
from cellsearch.wire import decode_embeddings, encode_embeddings, encode_expression, encode_refs

CellRefLike = str | tuple[str, str]
FilterLike = Mapping[str, Any] | pb.Filter | None

#: Every ``Filter`` field, read from the proto itself: (repeated string fields, switches).
_FILTER_LISTS: tuple[str, ...] = tuple(
    f.name for f in pb.Filter.DESCRIPTOR.fields if f.type == f.TYPE_STRING
)
_FILTER_FLAGS: tuple[str, ...] = tuple(
    f.name for f in pb.Filter.DESCRIPTOR.fields if f.type == f.TYPE_BOOL
)


class CellSearchError(RuntimeError):
    """A call the server refused or could not answer: ``code`` and the server's message."""

    def __init__(self, code: grpc.StatusCode, details: str, method: str = "") -> None:
        self.code = code
        self.details = details
        self.method = method
        #: Annotation only: the batches answered before the failure (a DataFrame).
        self.partial: Any = None
        where = f" in {method}" if method else ""
        super().__init__(f"{code.name}{where}: {details}")


def make_filter(spec: FilterLike) -> pb.Filter | None:
    """A ``Filter`` from a dict keyed by the proto's field names, e.g.
    ``{"tissues": ["lung"], "exclude_cell_types": ["T cell"], "exact_terms": True}``; a
    single string stands for a one-item list."""
    if spec is None or isinstance(spec, pb.Filter):
        return spec
    unknown = set(spec) - set(_FILTER_LISTS) - set(_FILTER_FLAGS)
    if unknown:
        msg = f"unknown filter keys {sorted(unknown)}; use {[*_FILTER_LISTS, *_FILTER_FLAGS]}"
        raise ValueError(msg)
    lists = {}
    for key in _FILTER_LISTS:
        if key in spec:
            value = spec[key]
            lists[key] = [value] if isinstance(value, str) else list(value)
    flags = {key: bool(spec[key]) for key in _FILTER_FLAGS if key in spec}
    return pb.Filter(**cast("dict[str, Any]", {**lists, **flags}))


def _is_anndata(query: Any) -> bool:
    return hasattr(query, "obs_names") and hasattr(query, "var_names") and hasattr(query, "X")


@dataclass(frozen=True)
class Query:
    """A query as the client sends it: what it is, how many cells, their default names."""

    kind: str  # "cells", "expression" or "embeddings"
    data: Any
    genes: list[str] | None
    names: list[str]
    n: int

    def part(self, start: int, stop: int) -> dict[str, Any]:
        """The oneof ``query`` of a request for cells ``start:stop``."""
        if self.kind == "cells":
            return {"cells": pb.CellRefs(cells=encode_refs(self.data[start:stop]))}
        if self.kind == "expression":
            assert self.genes is not None
            return {"expression": encode_expression(self.data[start:stop], self.genes)}
        return {"embeddings": encode_embeddings(self.data[start:stop])}


def prepare_query(
    query: Any, genes: Sequence[str] | None = None, *, layer: str | None = None
) -> Query:
    """Check a query before anything is sent; raise ``ValueError``/``TypeError`` saying what to
    fix (a wrong gene list, log-normalised counts, an unknown type).

    ``query``: an AnnData (its raw counts by the platform's rule: ``layers["counts"]``, else
    ``.raw``, else ``X``; ``layer=`` to choose); raw counts (scipy sparse or dense) with
    ``genes``; an ``(n, 128)`` embedding matrix; or a list of stored cell ids /
    ``(dataset_id, cell_id)`` pairs.
    """
    import scipy.sparse as sp

    if _is_anndata(query):
        from celldata.counts import counts_of

        counts = counts_of(query, layer, where="the AnnData")
        names = [str(c) for c in query.obs_names]
        gene_list = list(genes) if genes is not None else counts.var_names
        return _expression(counts.matrix, gene_list, names)
    if isinstance(query, list | tuple):
        if not all(isinstance(q, str | tuple) for q in query):
            msg = "a list query must hold stored cell ids or (dataset_id, cell_id) pairs"
            raise TypeError(msg)
        refs = list(query)
        names = [r if isinstance(r, str) else "/".join(r) for r in refs]
        return Query("cells", refs, None, names, len(refs))
    if genes is not None:
        if not (sp.issparse(query) or isinstance(query, np.ndarray)):
            msg = (
                f"raw counts must be a scipy sparse matrix or a numpy array, got "
                f"{type(query).__name__}"
            )
            raise TypeError(msg)
        return _expression(query, list(genes), None)
    if sp.issparse(query):
        msg = "a sparse matrix is read as raw counts: pass genes= naming its columns"
        raise ValueError(msg)
    if not isinstance(query, np.ndarray):
        msg = (
            f"cannot annotate or search a {type(query).__name__}: pass an AnnData, raw counts "
            "(scipy sparse or numpy) with genes=, an (n, 128) embedding matrix, or a list of "
            "stored cell ids"
        )
        raise TypeError(msg)
    mat = np.asarray(query, dtype=np.float32)
    if mat.ndim == 1:
        mat = mat[None, :]
    if mat.ndim != 2:
        msg = f"embeddings must be a (n, dim) matrix, got shape {mat.shape}"
        raise ValueError(msg)
    return Query("embeddings", mat, None, [str(i) for i in range(mat.shape[0])], mat.shape[0])


def _expression(matrix: Any, genes: list[str], names: list[str] | None) -> Query:
    import scipy.sparse as sp

    from celldata.counts import check_counts

    if matrix.ndim != 2 or matrix.shape[1] != len(genes):
        msg = (
            f"the count matrix has {matrix.shape[1] if matrix.ndim == 2 else '?'} columns but "
            f"{len(genes)} gene names were given: genes= must name every column, in order"
        )
        raise ValueError(msg)
    check_counts(matrix, where="the query", location="its counts")
    mat = sp.csr_matrix(matrix, dtype=np.float32)
    if names is None:
        names = [str(i) for i in range(mat.shape[0])]
    return Query("expression", mat, genes, names, mat.shape[0])


def _hits_frame(
    names: Sequence[str], results: Sequence[Any], *, with_vectors: bool
) -> pd.DataFrame:
    """The long hits frame (``cellsearch.search.frames``) of ``QueryHits`` replies."""
    rows: list[dict[str, Any]] = []
    vectors: list[Any] = []
    for name, group in zip(names, results, strict=True):
        for rank, hit in enumerate(group.hits):
            rows.append(frames.hit_row(name, rank, hit, dict(hit.fields)))
            vectors.append(list(hit.vector))
    return frames.hits_frame(rows, vectors if with_vectors else None)


def _found_names(q: Query, results: Sequence[Any]) -> list[str]:
    """Names of stored-cell queries (every id found, or the server refuses the query)."""
    return q.names if len(results) == q.n else [str(i) for i in range(len(results))]


def job_from_proto(msg: pb.Job) -> Job:
    return Job(
        job_id=msg.job_id,
        dataset_id=msg.dataset_id,
        study_id=msg.study_id,
        path=msg.path,
        metadata=dict(msg.metadata),
        state=JobState(pb.JobState.Name(msg.state)),
        cells_done=msg.cells_done,
        cells_total=msg.cells_total,
        stage_seconds=dict(msg.stage_seconds),
        error=msg.error,
        error_code=msg.error_code,
        attempts=msg.attempts,
        cancel_requested=msg.cancel_requested,
        created_at=msg.created_at,
        updated_at=msg.updated_at,
    )


class CellSearchClient:
    """One channel to a cellsearch server: the methods of :class:`cellsearch.Atlas` (search,
    search_centroid, annotate, embed, ingest, stats, ...) with the same return types, over
    gRPC.

    ``address``: host:port (default: ``CELLSEARCH_GRPC_ADDRESS``). ``token``: the server's
    bearer token (default: ``CELLSEARCH_AUTH_TOKEN``; none when auth is off). ``tls``: use
    TLS; pass ``root_certificates`` (PEM bytes) for a private CA. ``timeout``: default
    deadline in seconds for every call (a call may pass its own).
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        token: str | None = None,
        tls: bool = False,
        root_certificates: bytes | None = None,
        timeout: float = 60.0,
        max_message_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        if address is None or token is None:
            from cellsearch.platform.settings import get_settings

            settings = get_settings()
            address = address or settings.grpc_address
            if token is None and settings.auth_token is not None:
                token = settings.auth_token.get_secret_value() or None
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        if tls or root_certificates is not None:
            creds = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            self._channel = grpc.secure_channel(address, creds, options=options)
        else:
            self._channel = grpc.insecure_channel(address, options=options)
        self.address = address
        self.timeout = timeout
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.search_stub = pb_grpc.CellSearchStub(self._channel)
        self.ingestion_stub = pb_grpc.IngestionStub(self._channel)
        self.atlas_stub = pb_grpc.AtlasStub(self._channel)

    # -- plumbing -------------------------------------------------------------
    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> CellSearchClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: Any, request: Any, timeout: float | None = None) -> Any:
        try:
            return method(request, timeout=timeout or self.timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise _error(exc, method) from None

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until the server answers (e.g. just after starting it)."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            msg = f"no cellsearch server answered at {self.address} within {timeout:.0f} s"
            raise CellSearchError(grpc.StatusCode.UNAVAILABLE, msg) from None

    # -- Atlas ----------------------------------------------------------------
    def ping(self) -> str:
        """The server's version (checks the address and the token)."""
        return self._call(self.atlas_stub.Ping, pb.PingRequest()).version

    def stats(
        self, *, filter: FilterLike = None, by: Sequence[str] = (), top: int = 50
    ) -> tuple[int, dict[str, pd.DataFrame]]:
        """Total cells and, per facet, a DataFrame of ``id, label, count``."""
        reply = self._call(
            self.atlas_stub.Stats,
            pb.StatsRequest(filter=make_filter(filter), by=list(by), top=top),
        )
        facets = {
            f.name: pd.DataFrame(
                [(c.id, c.label, c.count) for c in f.counts], columns=["id", "label", "count"]
            )
            for f in reply.facets
        }
        return int(reply.total_cells), facets

    def resolve(self, text: str, kind: str = "cell_type") -> tuple[str, str]:
        """``(term_id, label)`` of a name, synonym or id."""
        reply = self._call(self.atlas_stub.ResolveTerm, pb.ResolveTermRequest(text=text, kind=kind))
        return reply.term_id, reply.label

    def model_info(self) -> dict[str, Any]:
        reply = self._call(self.atlas_stub.GetModelInfo, pb.GetModelInfoRequest())
        return {
            "model_version": reply.model_version,
            "dim": reply.dim,
            "n_genes": reply.n_genes,
            "cell_types": list(reply.cell_types),
        }

    # -- CellSearch -----------------------------------------------------------
    def search(
        self,
        query: Any,
        *,
        k: int = 50,
        filter: FilterLike = None,
        genes: Sequence[str] | None = None,
        layer: str | None = None,
        fields: Sequence[str] = (),
        with_vectors: bool = False,
        timeout: float | None = None,
    ) -> pd.DataFrame:
        """The ``k`` most similar stored cells to each query cell, as one long frame: a row
        per (query cell, hit) with the query cell's name, rank, score, distance and the
        hit's metadata and labels (``Atlas.search`` over gRPC).

        ``query``: an AnnData; raw counts with ``genes``; an ``(n, 128)`` embedding matrix;
        or stored cell ids / ``(dataset_id, cell_id)`` pairs.
        """
        q = prepare_query(query, genes, layer=layer)
        request = pb.SearchRequest(
            **q.part(0, q.n),
            k=k,
            filter=make_filter(filter),
            fields=list(fields),
            with_vectors=with_vectors,
        )
        reply = self._call(self.search_stub.Search, request, timeout)
        names = q.names if q.kind != "cells" else _found_names(q, reply.results)
        return _hits_frame(names, reply.results, with_vectors=with_vectors)

    def search_centroid(
        self,
        query: Any,
        *,
        k: int = 50,
        filter: FilterLike = None,
        genes: Sequence[str] | None = None,
        layer: str | None = None,
        fields: Sequence[str] = (),
        timeout: float | None = None,
    ) -> tuple[pd.DataFrame, float]:
        """Nearest cells to the query population's centroid, and its coherence in [0, 1]."""
        q = prepare_query(query, genes, layer=layer)
        request = pb.SearchCentroidRequest(
            **q.part(0, q.n), k=k, filter=make_filter(filter), fields=list(fields)
        )
        reply = self._call(self.search_stub.SearchCentroid, request, timeout)
        hits = _hits_frame(["centroid"], [reply], with_vectors=False)
        return hits.drop(columns="query"), float(reply.coherence)

    def embed(
        self,
        data: Any,
        *,
        genes: Sequence[str] | None = None,
        layer: str | None = None,
        batch_size: int = 5000,
        timeout: float | None = None,
    ) -> np.ndarray:
        """Unit vectors ``(n_cells, 128)`` of raw counts (an AnnData, or a matrix with
        ``genes``), embedded by the server's model in batches of ``batch_size`` cells."""
        q = prepare_query(data, genes, layer=layer)
        if q.kind != "expression":
            msg = "embed takes raw counts: an AnnData, or a count matrix with genes="
            raise ValueError(msg)
        parts = [np.zeros((0, 128), dtype=np.float32)]
        for start in range(0, q.n, batch_size):
            request = pb.EmbedRequest(**q.part(start, min(q.n, start + batch_size)))
            reply = self._call(self.search_stub.Embed, request, timeout)
            parts.append(decode_embeddings(reply.embeddings, reply.embeddings.dim))
        return np.vstack(parts)

    def annotate_batches(
        self,
        query: Any,
        *,
        genes: Sequence[str] | None = None,
        cell_names: Sequence[str] | None = None,
        k: int = 0,
        filter: FilterLike = None,
        batch_size: int = 1000,
        timeout: float | None = None,
        layer: str | None = None,
        with_neighbours: bool = False,
        unknown_quantile: float = 0.0,
    ) -> Iterator[pd.DataFrame]:
        """Annotate batch by batch over one stream: yields each batch's DataFrame as soon as
        the server answers it. ``timeout`` bounds each batch (default: the client's), not the
        whole job, so a million cells never hit one deadline. The frames carry
        ``attrs["model_version"]`` and ``attrs["parameters"]``.
        """
        q = prepare_query(query, genes, layer=layer)
        names = list(cell_names) if cell_names is not None else q.names
        if names is not None and len(names) != q.n:
            msg = f"cell_names has {len(names)} names for {q.n} query cells"
            raise ValueError(msg)
        if batch_size < 1:
            msg = f"batch_size must be positive, got {batch_size}"
            raise ValueError(msg)
        flt = make_filter(filter)

        def requests() -> Iterator[pb.AnnotateRequest]:
            for start in range(0, q.n, batch_size):
                stop = min(q.n, start + batch_size)
                yield pb.AnnotateRequest(
                    **q.part(start, stop),
                    cell_names=names[start:stop]
                    if names is not None
                    else [str(i) for i in range(start, stop)],
                    k=k,
                    filter=flt,
                    with_neighbours=with_neighbours,
                    unknown_quantile=unknown_quantile,
                )

        call = self.search_stub.Annotate(requests(), metadata=self._metadata)
        watchdog = _BatchWatchdog(call, timeout or self.timeout)
        done = 0
        try:
            for reply in call:
                watchdog.reset()
                frame = annotation_frame(reply, with_neighbours=with_neighbours)
                done += len(frame)
                yield frame
        except grpc.RpcError as exc:
            if watchdog.expired:
                msg = (
                    f"no reply for the batch after cell {done} within {watchdog.timeout:.0f} s "
                    f"(the per-batch timeout); {done} cells were annotated before it"
                )
                raise CellSearchError(grpc.StatusCode.DEADLINE_EXCEEDED, msg, "Annotate") from None
            raise _error(exc, self.search_stub.Annotate) from None
        finally:
            watchdog.stop()
            call.cancel()  # no-op when the stream ended; frees the server when we stop early

    def annotate(
        self,
        query: Any,
        *,
        genes: Sequence[str] | None = None,
        cell_names: Sequence[str] | None = None,
        k: int = 0,
        filter: FilterLike = None,
        batch_size: int = 1000,
        timeout: float | None = None,
        layer: str | None = None,
        key_added: str | None = None,
        with_neighbours: bool = False,
        unknown_quantile: float = 0.0,
        progress: bool = False,
    ) -> pd.DataFrame:
        """Cell type, confidence, representation confidence and the vote's statistics per
        query cell, one row per cell, indexed by cell name.

        ``query``: an AnnData (raw counts found by ``layers["counts"]`` > ``.raw`` > ``X``, or
        ``layer=``), raw counts with ``genes``, ``(n, 128)`` embeddings or stored cell ids.
        Large queries stream in batches of ``batch_size`` cells; ``timeout`` bounds each batch.
        ``k``: candidate reference neighbours per cell (0: the server's 100); each study's
        nearest three of them vote.
        ``unknown_quantile`` sets how strict the "unknown" flag is (0: the server's default,
        0.95; 0.8 flags more new types and more known cells). ``progress`` draws a progress
        bar on stderr. ``key_added``: also write the columns into ``query.obs`` as
        ``f"{key_added}_<column>"`` and the model version and parameters into
        ``uns[key_added]`` (an AnnData query). If a batch fails, the
        :class:`CellSearchError` raised carries the batches already answered in ``.partial``.
        """
        batches: list[pd.DataFrame] = []
        bar = None
        if progress:
            from tqdm import tqdm

            total = query.n_obs if _is_anndata(query) else _n_cells(query)
            bar = tqdm(total=total, unit="cells", desc="annotate", dynamic_ncols=True)
        try:
            for frame in self.annotate_batches(
                query,
                genes=genes,
                cell_names=cell_names,
                k=k,
                filter=filter,
                batch_size=batch_size,
                timeout=timeout,
                layer=layer,
                with_neighbours=with_neighbours,
                unknown_quantile=unknown_quantile,
            ):
                batches.append(frame)
                if bar is not None:
                    bar.update(len(frame))
        except CellSearchError as exc:
            exc.partial = _concat(batches)
            raise
        finally:
            if bar is not None:
                bar.close()
        out = _concat(batches)
        if key_added is not None:
            if not _is_anndata(query):
                msg = "key_added writes into an AnnData's obs: pass an AnnData query"
                raise ValueError(msg)
            frames.write_annotations(query, out, key_added=key_added)
        return out

    def get_cells(
        self,
        cells: Iterable[CellRefLike],
        *,
        with_vectors: bool = False,
        fields: Sequence[str] = (),
    ) -> pd.DataFrame:
        """Stored cells by reference (missing ones are left out)."""
        request = pb.GetCellsRequest(
            cells=encode_refs(cells), with_vectors=with_vectors, fields=list(fields)
        )
        reply = self._call(self.search_stub.GetCells, request)
        rows = [frames.hit_row("", 0, h, dict(h.fields)) for h in reply.cells]
        vectors = [list(h.vector) for h in reply.cells] if with_vectors else None
        frame = frames.hits_frame(rows, vectors)
        return frame.drop(columns=["query", "rank", "score", "distance"], errors="ignore")

    # -- Ingestion ------------------------------------------------------------
    def submit_ingestion(
        self,
        path: str | Path,
        study_id: str = "",
        *,
        dataset_id: str = "",
        metadata: Mapping[str, str] | None = None,
    ) -> Job:
        """Start ingesting a file the server can read; returns the PENDING job. Without
        ``study_id`` the file's own ``study_id`` column names each cell's study."""
        request = pb.SubmitIngestionRequest(
            path=str(path), study_id=study_id, dataset_id=dataset_id, metadata=metadata or {}
        )
        return job_from_proto(self._call(self.ingestion_stub.SubmitIngestion, request))

    def ingest(
        self,
        path: str | Path,
        *,
        study: str = "",
        dataset: str | None = None,
        metadata: Mapping[str, str] | None = None,
        progress: bool = True,
        timeout: float | None = None,
    ) -> Job:
        """Ingest a file the server can read and wait for the job (``Atlas.ingest`` over
        gRPC): returns the finished job, or raises :class:`JobFailedError` saying why."""
        job = self.submit_ingestion(path, study, dataset_id=dataset or "", metadata=metadata)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=0, unit="cells", desc=f"ingest {job.dataset_id}", dynamic_ncols=True)
        try:
            for current in self.watch_job(job.job_id, timeout=timeout):
                if bar is not None:
                    bar.total = current.cells_total or bar.total
                    bar.update(current.cells_done - bar.n)
                job = current
        finally:
            if bar is not None:
                bar.close()
        if job.state != JobState.SUCCEEDED:
            raise JobFailedError(job.job_id, job.error_code, job.error or str(job.state))
        return job

    def get_job(self, job_id: str) -> Job:
        return job_from_proto(self._call(self.ingestion_stub.GetJob, pb.JobRequest(job_id=job_id)))

    def watch_job(
        self, job_id: str, *, timeout: float | None = None, poll_s: float = 1.0
    ) -> Iterator[Job]:
        """The job now and after every change, until it ends (or ``timeout`` passes).

        The server ends a watch after its maximum lifetime and refuses watchers over its
        cap (RESOURCE_EXHAUSTED): the first is re-opened, the second polled with GetJob
        every ``poll_s``, so a caller sees one stream either way.
        """
        import time

        end = None if timeout is None else time.monotonic() + timeout
        last: Job | None = None
        while True:
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                return
            try:
                for msg in self.ingestion_stub.WatchJob(
                    pb.JobRequest(job_id=job_id), timeout=left, metadata=self._metadata
                ):
                    job = job_from_proto(msg)
                    if job != last:
                        last = job
                        yield job
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    return
                if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    raise _error(exc, self.ingestion_stub.WatchJob) from None
                job = self.get_job(job_id)
                if job != last:
                    last = job
                    yield job
                time.sleep(poll_s if left is None else max(0.0, min(poll_s, left)))
            if last is not None and JobState(last.state).terminal:
                return

    def wait_job(self, job_id: str, *, timeout: float | None = None) -> Job:
        """Block until the job ends; returns its final record."""
        last = self.get_job(job_id)
        for job in self.watch_job(job_id, timeout=timeout):
            last = job
        return last

    def cancel_job(self, job_id: str) -> Job:
        return job_from_proto(
            self._call(self.ingestion_stub.CancelJob, pb.JobRequest(job_id=job_id))
        )

    def list_datasets(self) -> pd.DataFrame:
        reply = self._call(self.ingestion_stub.ListDatasets, pb.ListDatasetsRequest())
        entries = [
            DatasetEntry(
                dataset_id=d.dataset_id,
                study_id=d.study_id,
                path=d.path,
                n_cells=d.n_cells,
                genes_matched=d.genes_matched,
                genes_total=d.genes_total,
                model_version=d.model_version,
                job_id=d.job_id,
                metadata=dict(d.metadata),
                ingested_at=d.ingested_at,
            )
            for d in reply.datasets
        ]
        return pd.DataFrame([e.__dict__ for e in entries])

    def delete_dataset(self, dataset_id: str) -> int:
        """Remove a dataset; returns how many cells were removed."""
        reply = self._call(
            self.ingestion_stub.DeleteDataset, pb.DeleteDatasetRequest(dataset_id=dataset_id)
        )
        return int(reply.cells_removed)


def _n_cells(query: Any) -> int:
    return len(query) if isinstance(query, list | tuple) else int(query.shape[0])


_concat = frames.concat_frames


ANNOTATION_COLUMNS = frames.ANNOTATION_COLUMNS


def annotation_frame(reply: pb.AnnotateReply, *, with_neighbours: bool = False) -> pd.DataFrame:
    """One batch's annotations as a DataFrame indexed by cell name.

    ``votes`` reads ``"label id:share;..."`` (top labels by their own vote share);
    ``neighbours`` (when asked) holds ``(dataset_id, cell_id, distance)`` tuples per cell.
    """
    anns = reply.annotations
    data: dict[str, Any] = {col: [getattr(a, col) for a in anns] for col in ANNOTATION_COLUMNS}
    data["votes"] = [";".join(f"{v.cell_type_id}:{v.share:.3f}" for v in a.votes) for a in anns]
    if with_neighbours:
        data["neighbours"] = [
            [(h.dataset_id, h.cell_id, h.distance) for h in a.neighbours] for a in anns
        ]
    frame = pd.DataFrame(data, index=pd.Index([a.cell_name for a in anns], name="cell"))
    frame.attrs = {"model_version": reply.model_version, "parameters": dict(reply.parameters)}
    return frame


class _BatchWatchdog:
    """Cancels a stream when no reply came within ``timeout`` seconds of the last one: a
    deadline per batch, where gRPC's own deadline would bound the whole job."""

    def __init__(self, call: Any, timeout: float) -> None:
        self.call = call
        self.timeout = timeout
        self.expired = False
        self._last = time.monotonic()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def reset(self) -> None:
        self._last = time.monotonic()

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        tick = min(1.0, self.timeout / 4)
        while not self._stopped.wait(tick):
            if time.monotonic() - self._last > self.timeout:
                self.expired = True
                self.call.cancel()
                return


def _error(exc: grpc.RpcError, method: Any) -> CellSearchError:
    name = getattr(method, "_method", b"")
    name = name.decode() if isinstance(name, bytes) else str(name)
    return CellSearchError(exc.code(), exc.details() or "", name.rsplit("/", 1)[-1])
