"""The Ingestion service: record a job, hand it to a worker by name, report on it.

The service never runs ingestion itself: ``deps.submit(job_id)`` enqueues the Celery task
by name (or, in the embedded mode without Redis, starts the pipeline in a thread the CLI
provides). Paths are checked here, before a job exists, so a typo fails the call rather
than a job minutes later.

No client field chooses internal behaviour: reserved metadata keys and oversized metadata
are refused (``cellsearch.limits``), and the dataset id is claimed by the job that creates
it, so a submission for an id that is registered or still being ingested fails at once
with ALREADY_EXISTS instead of writing into someone else's dataset.

``WatchJob`` is bounded: it ends when the client goes (a callback on the call, checked
every ``WATCH_SLICE_S``), when the job ends, or after ``watch_max_s`` (the client
re-watches), and the interceptor caps how many run at once (``services.search.guard``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import grpc

from cellsearch.jobs import JobState
from cellsearch.limits import check_metadata
from cellsearch.v1 import cellsearch_pb2 as pb
from cellsearch.v1 import cellsearch_pb2_grpc as pb_grpc
from services.search.deps import ServiceDeps
from services.search.servicer_convert import dataset_to_proto, job_to_proto
from services.search.status import (
    NotFoundError,
    PreconditionError,
    UnavailableError,
    grpc_errors,
)


def check_ingest_path(path_text: str, allowed_roots: tuple[Path, ...]) -> Path:
    """The resolved path when it exists under an allowed root; a specific error otherwise."""
    if not path_text:
        text = "path is empty: give the .h5ad (or 10x .h5, Matrix Market folder) to ingest"
        raise ValueError(text)
    path = Path(path_text).expanduser().resolve()
    roots = [Path(r).expanduser().resolve() for r in allowed_roots]
    if not any(path.is_relative_to(root) for root in roots):
        shown = ", ".join(str(r) for r in roots)
        text = (
            f"{path} is outside the folders this server may read ({shown}); copy the file "
            "there or add its folder to CELLSEARCH_ALLOWED_ROOTS"
        )
        raise ValueError(text)
    if not path.exists():
        text = (
            f"{path} does not exist on the server; check the path (it is the server's, not yours)"
        )
        raise NotFoundError(text)
    return path


def default_dataset_id(study_id: str, path: Path) -> str:
    name = path.name.removesuffix(".gz").removesuffix(".h5ad").removesuffix(".h5")
    return f"{study_id}/{name}"


class IngestionServicer(pb_grpc.IngestionServicer):
    def __init__(self, deps: ServiceDeps) -> None:
        self.deps = deps

    @grpc_errors
    def SubmitIngestion(
        self, request: pb.SubmitIngestionRequest, context: grpc.ServicerContext
    ) -> pb.Job:
        if not request.study_id:
            text = "study_id is empty: name the study these cells come from (e.g. 'smith2024')"
            raise ValueError(text)
        settings = self.deps.settings
        metadata = dict(request.metadata)
        check_metadata(
            metadata,
            max_entries=settings.max_metadata_entries,
            max_bytes=settings.max_metadata_bytes,
        )
        path = check_ingest_path(request.path, tuple(settings.allowed_roots))
        jobs = self.deps.jobs
        job = jobs.create(
            path=str(path),
            study_id=request.study_id,
            dataset_id=request.dataset_id or default_dataset_id(request.study_id, path),
            metadata=metadata,
            claim=True,  # DatasetTakenError (ALREADY_EXISTS) when the id is not free
        )
        try:
            self.deps.submit(job.job_id)
        except Exception as exc:
            reason = f"could not enqueue the job: {exc}"
            jobs.update(job.job_id, state=JobState.FAILED, error=reason, error_code="unavailable")
            jobs.release_claim(job.dataset_id, job.job_id)
            text = f"the ingestion queue does not answer ({exc}); is the broker running?"
            raise UnavailableError(text) from exc
        return job_to_proto(jobs.get(job.job_id))

    @grpc_errors
    def GetJob(self, request: pb.JobRequest, context: grpc.ServicerContext) -> pb.Job:
        return job_to_proto(self.deps.jobs.get(request.job_id))

    @grpc_errors
    def WatchJob(self, request: pb.JobRequest, context: grpc.ServicerContext) -> Iterator[pb.Job]:
        gone = threading.Event()
        context.add_callback(gone.set)  # the client left, cancelled, or its deadline passed
        lifetime = self.deps.settings.watch_max_s
        remaining = context.time_remaining()
        if remaining is not None:
            lifetime = min(lifetime, remaining)
        for job in self.deps.jobs.watch(request.job_id, timeout_s=lifetime, stop=gone.is_set):
            if gone.is_set():
                return
            yield job_to_proto(job)

    @grpc_errors
    def CancelJob(self, request: pb.JobRequest, context: grpc.ServicerContext) -> pb.Job:
        jobs = self.deps.jobs
        job = jobs.get(request.job_id)
        if job.state.terminal:
            text = f"job {job.job_id} already ended {job.state}; there is nothing to cancel"
            raise PreconditionError(text)
        job = jobs.request_cancel(job.job_id)
        if job.state == JobState.PENDING:  # no worker holds it yet: end it here
            job = jobs.update(job.job_id, state=JobState.CANCELLED)
        return job_to_proto(job)

    @grpc_errors
    def ListDatasets(
        self, request: pb.ListDatasetsRequest, context: grpc.ServicerContext
    ) -> pb.ListDatasetsReply:
        return pb.ListDatasetsReply(
            datasets=[dataset_to_proto(d) for d in self.deps.jobs.list_datasets()]
        )

    @grpc_errors
    def DeleteDataset(
        self, request: pb.DeleteDatasetRequest, context: grpc.ServicerContext
    ) -> pb.DeleteDatasetReply:
        if not request.dataset_id:
            text = "dataset_id is empty: name the dataset to delete (see ListDatasets)"
            raise ValueError(text)
        entry = self.deps.jobs.get_dataset(request.dataset_id)
        removed = self.deps.store.delete_dataset(request.dataset_id)
        self.deps.jobs.remove_dataset(request.dataset_id)
        self.deps.jobs.release_claim(request.dataset_id, entry.job_id)
        return pb.DeleteDatasetReply(cells_removed=removed)
