"""The Ingestion service: decode a submission, hand it to the core, report on jobs.

The service never runs ingestion itself and holds no ingestion rule: the core's
``submit_ingestion`` checks the metadata and the path (the one path policy), claims the
dataset id (ALREADY_EXISTS when it is registered or in flight) and enqueues the job by
name through ``deps.submit``; ``delete_dataset`` is the platform's one deletion.

``WatchJob`` is bounded: it ends when the client goes (a callback on the call, checked
every ``WATCH_SLICE_S``), when the job ends, or after ``watch_max_s`` (the client
re-watches), and the interceptor caps how many run at once (``services.search.guard``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc

from cellsearch.ingest.submit import submit_ingestion
from cellsearch.platform.datasets import delete_dataset
from cellsearch.platform.errors import InvalidRequestError, PreconditionError
from cellsearch.platform.jobs import JobState
from cellsearch.v1 import cellsearch_pb2 as pb
from cellsearch.v1 import cellsearch_pb2_grpc as pb_grpc
from services.search.deps import ServiceDeps
from services.search.servicer_convert import dataset_to_proto, job_to_proto
from services.search.status import grpc_errors


class IngestionServicer(pb_grpc.IngestionServicer):
    def __init__(self, deps: ServiceDeps) -> None:
        self.deps = deps

    @grpc_errors
    def SubmitIngestion(
        self, request: pb.SubmitIngestionRequest, context: grpc.ServicerContext
    ) -> pb.Job:
        settings = self.deps.settings
        job = submit_ingestion(
            self.deps.jobs,
            self.deps.submit,
            path=request.path,
            study_id=request.study_id,
            dataset_id=request.dataset_id,
            metadata=dict(request.metadata),
            allowed_roots=settings.allowed_roots,
            max_metadata_entries=settings.max_metadata_entries,
            max_metadata_bytes=settings.max_metadata_bytes,
        )
        return job_to_proto(job)

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
            raise InvalidRequestError(text)
        removed = delete_dataset(request.dataset_id, jobs=self.deps.jobs, store=self.deps.store)
        return pb.DeleteDatasetReply(cells_removed=removed)
