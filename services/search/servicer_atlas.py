"""The Atlas service: what the atlas holds, ontology look-up, the model being served."""

from __future__ import annotations

import grpc

from cellsearch import __version__
from cellsearch.v1 import cellsearch_pb2 as pb
from cellsearch.v1 import cellsearch_pb2_grpc as pb_grpc
from services.search import servicer_engine as engine
from services.search.deps import ServiceDeps
from services.search.servicer_convert import term_label
from services.search.status import grpc_errors

#: Facet name -> payload field.
FACETS: dict[str, str] = {
    "cell_type": "cell_type_id",
    "tissue": "tissue_id",
    "disease": "disease_id",
    "study": "study_id",
    "donor": "donor_id",
    "dataset": "dataset_id",
    "assay": "assay",
}
DEFAULT_FACETS = ("cell_type", "tissue", "disease", "study")
_TERM_FACETS = {"cell_type", "tissue", "disease"}


class AtlasServicer(pb_grpc.AtlasServicer):
    def __init__(self, deps: ServiceDeps) -> None:
        self.deps = deps

    def Ping(self, request: pb.PingRequest, context: grpc.ServicerContext) -> pb.PingReply:
        return pb.PingReply(version=__version__)

    @grpc_errors
    def Stats(self, request: pb.StatsRequest, context: grpc.ServicerContext) -> pb.StatsReply:
        by = list(request.by) or list(DEFAULT_FACETS)
        unknown = [b for b in by if b not in FACETS]
        if unknown:
            text = f"cannot count by {unknown}; choose among {sorted(FACETS)}"
            raise ValueError(text)
        flt = engine.store_filter(request.filter) if request.HasField("filter") else None
        top = int(request.top) or 50
        store = self.deps.store
        facets = []
        for name in by:
            counts = store.facet(FACETS[name], flt, limit=top)
            facets.append(
                pb.Facet(
                    name=name,
                    counts=[
                        pb.FacetCount(
                            id=value,
                            label=term_label(value) if name in _TERM_FACETS else value,
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
            raise ValueError(text)
        term = ontology.resolve(request.text, kind)  # type: ignore[arg-type]
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
            cell_types=[str(c) for c in getattr(enc, "labels", ())],
        )
