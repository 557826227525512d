"""The CellSearch service: decode a query, call the search core, encode the hits."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np

from celldata.counts import check_counts
from cellsearch.platform.errors import InvalidRequestError
from cellsearch.search import engine
from cellsearch.search import query as core_query
from cellsearch.search.frames import term_label
from cellsearch.v1 import cellsearch_pb2 as pb
from cellsearch.v1 import cellsearch_pb2_grpc as pb_grpc
from cellsearch.wire import (
    decode_embeddings,
    decode_expression,
    decode_refs,
    encode_embeddings,
)
from services.search.deps import ServiceDeps
from services.search.servicer_convert import (
    filter_spec,
    hit_to_proto,
)
from services.search.status import grpc_errors
from vectorstore import DIM as EMBEDDING_DIM


class QueryCells:
    """A request's query: vectors (sent or embedded here) or stored cell references."""

    def __init__(self, vectors: np.ndarray | None = None, cells: list | None = None) -> None:
        self.vectors = vectors
        self.cells = cells or []

    def __len__(self) -> int:
        return len(self.cells) if self.vectors is None else int(self.vectors.shape[0])


def decode_query(deps: ServiceDeps, request: Any, limits: core_query.QueryLimits) -> QueryCells:
    """Embeddings as sent, expression profiles embedded, stored cells as references."""
    which = request.WhichOneof("query")
    if which is None:
        text = "the request has no query: set embeddings, expression or cells"
        raise InvalidRequestError(text)
    if which == "embeddings":
        mat = decode_embeddings(request.embeddings, EMBEDDING_DIM)
        core_query.check_n_cells(mat.shape[0], limits)
        return QueryCells(vectors=mat)
    if which == "expression":
        return QueryCells(vectors=embed_expression(deps, request.expression, limits))
    refs = decode_refs(request.cells.cells)
    if not refs:
        text = "cells is empty: list at least one stored cell"
        raise InvalidRequestError(text)
    core_query.check_n_cells(len(refs), limits)
    return QueryCells(cells=refs)


def embed_expression(
    deps: ServiceDeps, expr: pb.ExpressionProfiles, limits: core_query.QueryLimits
) -> np.ndarray:
    """Raw counts from the wire, checked and embedded: float32 unit rows."""
    core_query.check_n_cells(expr.csr.n_cells if expr.HasField("csr") else len(expr.cells), limits)
    counts, genes = decode_expression(expr)
    # the ingestion check: log-normalised or scaled values are refused, never embedded
    check_counts(counts, where="expression", location="the request's counts")
    return np.asarray(deps.encoder.embed(counts, gene_names=genes), dtype=np.float32)


class CellSearchServicer(pb_grpc.CellSearchServicer):
    def __init__(self, deps: ServiceDeps) -> None:
        self.deps = deps
        self.limits = engine.limits_of(deps.settings)
        self.annotator = engine.Annotator(
            held_out=lambda: deps.encoder.training.get("held_out_distances")
        )

    @grpc_errors
    def Search(self, request: pb.SearchRequest, context: grpc.ServicerContext) -> pb.SearchReply:
        k = core_query.resolve_k(request.k, self.limits)
        query = decode_query(self.deps, request, self.limits)
        results = engine.search(
            self.deps.store,
            vectors=query.vectors,
            cells=query.cells,
            k=k,
            spec=filter_spec(request.filter if request.HasField("filter") else None),
            limits=self.limits,
            with_vectors=request.with_vectors,
        )
        fields = list(request.fields)
        vec = request.with_vectors
        return pb.SearchReply(
            results=[
                pb.QueryHits(hits=[hit_to_proto(h, fields, with_vector=vec) for h in hits])
                for hits in results
            ],
            model_version=self.deps.loaded_model_version,
        )

    @grpc_errors
    def SearchCentroid(
        self, request: pb.SearchCentroidRequest, context: grpc.ServicerContext
    ) -> pb.SearchCentroidReply:
        k = core_query.resolve_k(request.k, self.limits)
        query = decode_query(self.deps, request, self.limits)
        result = engine.search_centroid(
            self.deps.store,
            vectors=query.vectors,
            cells=query.cells,
            k=k,
            spec=filter_spec(request.filter if request.HasField("filter") else None),
            limits=self.limits,
            with_vectors=request.with_vectors,
        )
        fields = list(request.fields)
        return pb.SearchCentroidReply(
            hits=[hit_to_proto(h, fields, with_vector=request.with_vectors) for h in result.hits],
            coherence=float(result.coherence or 0.0),
            n_query_cells=result.n_query_cells,
            model_version=self.deps.loaded_model_version,
        )

    @grpc_errors
    def Annotate(
        self, request_iterator: Iterator[pb.AnnotateRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.AnnotateReply]:
        """One reply per request batch, as soon as it is done: a client keeps every batch
        already answered whatever happens to a later one."""
        offset = 0
        session: dict[Any, Any] = {}  # the reference, resolved once for the whole stream
        for request in request_iterator:
            if not context.is_active():  # deadline passed or client gone: stop working
                return
            k = core_query.resolve_k(request.k, self.limits, default=core_query.DEFAULT_ANNOTATE_K)
            query = decode_query(self.deps, request, self.limits)
            vectors = query.vectors
            if vectors is None:
                hits = core_query.fetch_cells(self.deps.store, query.cells)
                vectors = np.stack([np.asarray(h.vector, dtype=np.float32) for h in hits])
            n = vectors.shape[0]
            names = list(request.cell_names) or [str(offset + i) for i in range(n)]
            if len(names) != n:
                text = f"cell_names lists {len(names)} names for {n} query cells"
                raise InvalidRequestError(text)
            spec = filter_spec(request.filter if request.HasField("filter") else None)
            quantile = round(float(request.unknown_quantile), 6) or None  # a float32 on the wire
            if quantile is not None and not 0.0 < quantile <= 1.0:
                text = f"unknown_quantile must be in (0, 1], got {quantile:g}"
                raise InvalidRequestError(text)
            result = self.annotator.annotate(
                self.deps.store,
                vectors,
                k,
                spec,
                with_neighbours=request.with_neighbours,
                unknown_quantile=quantile,
                session=session,
            )
            yield pb.AnnotateReply(
                annotations=annotations_to_proto(names, result),
                model_version=self.deps.loaded_model_version,
                offset=offset,
                parameters=self.annotator.parameters(
                    self.deps.store, k, spec, unknown_quantile=quantile, session=session
                ),
            )
            offset += n

    @grpc_errors
    def Embed(self, request: pb.EmbedRequest, context: grpc.ServicerContext) -> pb.EmbedReply:
        if not request.HasField("expression"):
            text = "expression is unset: send the raw counts of the cells to embed"
            raise InvalidRequestError(text)
        vectors = embed_expression(self.deps, request.expression, self.limits)
        return pb.EmbedReply(
            embeddings=encode_embeddings(vectors), model_version=self.deps.loaded_model_version
        )

    @grpc_errors
    def GetCells(
        self, request: pb.GetCellsRequest, context: grpc.ServicerContext
    ) -> pb.GetCellsReply:
        refs = decode_refs(request.cells)
        core_query.check_n_cells(len(refs), self.limits)
        hits = self.deps.store.retrieve(refs, with_vectors=request.with_vectors)
        found = {h.cell_id for h in hits} | {(h.dataset_id, h.cell_id) for h in hits}
        fields = list(request.fields)
        return pb.GetCellsReply(
            cells=[hit_to_proto(h, fields, with_vector=request.with_vectors) for h in hits],
            missing=[c for c, r in zip(request.cells, refs, strict=True) if r not in found],
        )


def annotations_to_proto(names: list[str], result: Any) -> list[pb.Annotation]:
    """One ``Annotation`` per query cell from the core's columnar result."""
    out = []
    for i, name in enumerate(names):
        term = result.label[i]
        unknown = bool(result.is_unknown[i])
        fine = result.best_fine_label[i]
        comp = result.competing_label[i]
        neighbours = []
        if result.neighbours is not None:
            neighbours = [
                pb.Hit(
                    cell_id=h.cell_id,
                    dataset_id=h.dataset_id,
                    score=float(h.score),
                    distance=float(h.distance),
                )
                for h in result.neighbours[i]
            ]
        out.append(
            pb.Annotation(
                cell_name=name,
                cell_type_id=term,
                cell_type=term if unknown else term_label(term),
                confidence=float(result.confidence[i]),
                representation_confidence=float(result.representation[i]),
                unknown=unknown,
                fell_back_to_ancestor=bool(result.via_ancestor[i]),
                mean_distance=float(result.distance[i]),
                best_fine_cell_type_id=fine,
                best_fine_cell_type=term_label(fine),
                competing_cell_type_id=comp,
                competing_cell_type=term_label(comp),
                competing_share=float(result.competing_share[i]),
                margin=float(result.margin[i]),
                nearest_distance=float(result.nearest_distance[i]),
                votes=[
                    pb.LabelShare(cell_type_id=lab, cell_type=term_label(lab), share=share)
                    for lab, share in zip(result.top_labels[i], result.top_shares[i], strict=True)
                ],
                neighbours=neighbours,
            )
        )
    return out
