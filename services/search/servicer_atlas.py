"""The Atlas service: what the atlas holds, ontology look-up, the model being served."""

from __future__ import annotations

from typing import cast

import grpc

from cellsearch import __version__
from cellsearch.platform.errors import InvalidRequestError
from cellsearch.search import engine
from cellsearch.v1 import cellsearch_pb2 as pb
from cellsearch.v1 import cellsearch_pb2_grpc as pb_grpc
from services.search.deps import ServiceDeps
from services.search.servicer_convert import filter_spec
from services.search.status import grpc_errors


class AtlasServicer(pb_grpc.AtlasServicer):
    def __init__(self, deps: ServiceDeps) -> None:
        self.deps = deps

    def Ping(self, request: pb.PingRequest, context: grpc.ServicerContext) -> pb.PingReply:
        return pb.PingReply(version=__version__)

    @grpc_errors
    def Stats(self, request: pb.StatsRequest, context: grpc.ServicerContext) -> pb.StatsReply:
        spec = filter_spec(request.filter) if request.HasField("filter") else None
        total, counts = engine.facet_counts(
            self.deps.store, spec, list(request.by), int(request.top) or 50
        )
        facets = [
            pb.Facet(
                name=name,
                counts=[pb.FacetCount(id=v, label=label, count=n) for v, label, n in rows],
            )
            for name, rows in counts.items()
        ]
        return pb.StatsReply(
            total_cells=total,
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
