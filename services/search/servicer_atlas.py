"""The Atlas service: what the atlas holds, ontology look-up, the model being served."""

from __future__ import annotations

from typing import cast

import grpc

from cellsearch import __version__
from cellsearch.platform import schema
from cellsearch.platform.errors import InvalidRequestError
from cellsearch.search import engine
from cellsearch.search.frames import term_label
from cellsearch.v1 import cellsearch_pb2 as pb
from cellsearch.v1 import cellsearch_pb2_grpc as pb_grpc
from services.search.deps import ServiceDeps
from services.search.servicer_convert import filter_spec
from services.search.status import grpc_errors

DEFAULT_FACETS = ("cell_type", "tissue", "disease", "study")


class AtlasServicer(pb_grpc.AtlasServicer):
    def __init__(self, deps: ServiceDeps) -> None:
        self.deps = deps

    def Ping(self, request: pb.PingRequest, context: grpc.ServicerContext) -> pb.PingReply:
        return pb.PingReply(version=__version__)

    @grpc_errors
    def Stats(self, request: pb.StatsRequest, context: grpc.ServicerContext) -> pb.StatsReply:
        by = list(request.by) or list(DEFAULT_FACETS)
        unknown = [b for b in by if b not in schema.FACETS]
        if unknown:
            text = f"cannot count by {unknown}; choose among {sorted(schema.FACETS)}"
            raise InvalidRequestError(text)
        flt = (
            engine.store_filter(filter_spec(request.filter)) if request.HasField("filter") else None
        )
        top = int(request.top) or 50
        store = self.deps.store
        facets = []
        for name in by:
            counts = store.facet(schema.FACETS[name], flt, limit=top)
            facets.append(
                pb.Facet(
                    name=name,
                    counts=[
                        pb.FacetCount(
                            id=value,
                            label=term_label(value)
                            if schema.FACETS[name] in schema.TERM_KINDS
                            else value,
                            count=n,
                        )
                        for value, n in counts.items()
                    ],
                )
            )
        return pb.StatsReply(
            total_cells=store.count(flt),
            facets=facets,
            n_datasets=len(self.deps.jobs.list_datasets()),
        )

    @grpc_errors
    def ResolveTerm(
        self, request: pb.ResolveTermRequest, context: grpc.ServicerContext
    ) -> pb.ResolveTermReply:
        import ontology

        kind = request.kind or "cell_type"
        if kind not in ontology.KINDS:
            text = f"kind {kind!r} is not one of {list(ontology.KINDS)}"
            raise InvalidRequestError(text)
        term = ontology.resolve(request.text, cast("ontology.OntologyKind", kind))
        return pb.ResolveTermReply(term_id=term, label=ontology.label(term), kind=kind)

    @grpc_errors
    def GetModelInfo(
        self, request: pb.GetModelInfoRequest, context: grpc.ServicerContext
    ) -> pb.ModelInfo:
        enc = self.deps.encoder
        return pb.ModelInfo(
            model_version=str(enc.model_version),
            dim=int(enc.embedding_dim),
            n_genes=len(enc.genes),
            cell_types=[str(c) for c in enc.labels],
        )
