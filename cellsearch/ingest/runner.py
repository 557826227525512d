"""Run ingestion jobs in this process: the resources a runner holds, and the thread runner.

A worker process (Celery, in ``workers/``) and the embedded platform without Redis both run
the same pipeline over a :class:`Resources` bundle opened once per process: the encoder
takes seconds to load and an embedded store can be opened by one handle only. Without a
broker, :class:`InProcessRunner` runs jobs one at a time on a background thread and, after
a restart, resumes the jobs the last process left unfinished.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from cellsearch.ingest import pipeline
from cellsearch.ingest.recovery import LeaseHeldError, leased, unfinished
from cellsearch.platform import ops
from cellsearch.platform.jobs import Job, JobStore
from cellsearch.platform.settings import Settings
from vectorstore import CellStore

log = logging.getLogger(__name__)


@dataclass
class Resources:
    """What a task needs, opened once per process."""

    store: CellStore
    encoder: pipeline.Encoder
    jobs: JobStore
    ingest_options: pipeline.IngestOptions
    owns_store: bool = True
    lease_s: float = 15.0

    def options(self, **overrides: Any) -> pipeline.IngestOptions:
        return replace(self.ingest_options, **overrides)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        store: CellStore,
        encoder: pipeline.Encoder,
        jobs: JobStore,
        owns_store: bool = False,
    ) -> Resources:
        """The bundle over opened collaborators, with the knobs ``settings`` name."""
        return cls(
            store=store,
            encoder=encoder,
            jobs=jobs,
            ingest_options=ingest_options(settings),
            owns_store=owns_store,
            lease_s=settings.job_lease_s,
        )

    def close(self) -> None:
        if self.owns_store:
            self.store.close()


def ingest_options(settings: Settings, **overrides: Any) -> pipeline.IngestOptions:
    """Pipeline knobs from settings (chunk size, batch size, allowed roots, HNSW build)."""
    base = pipeline.IngestOptions(
        allowed_roots=tuple(settings.allowed_roots),
        chunk_cells=settings.ingest_chunk_cells,
        embed_batch_size=settings.embed_batch_size,
        optimize=settings.ingest_optimize,
        index_every_cells=settings.ingest_index_every_cells,
    )
    return replace(base, **overrides)


class InProcessRunner:
    """The embedded mode without Redis: jobs run one at a time on a background thread."""

    def __init__(self, resources: Resources) -> None:
        self.resources = resources
        self.jobs = resources.jobs
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cellsearch-ingest")
        self.futures: dict[str, Future[Job]] = {}

    def enqueue(self, job_id: str) -> None:
        self.futures[job_id] = self._pool.submit(self._run, job_id)

    def resume(self) -> list[str]:
        """Enqueue every unfinished job (after a restart: this process is the only worker)."""
        ids = [j.job_id for j in sorted(unfinished(self.jobs), key=lambda j: j.created_at)]
        for job_id in ids:
            log.warning("resuming ingestion job %s after a restart", job_id)
            self.enqueue(job_id)
        return ids

    def _run(self, job_id: str) -> Job:
        res = self.resources
        try:
            with leased(res.jobs, job_id, lease_s=res.lease_s):
                job = pipeline.ingest(
                    job_id,
                    jobs=res.jobs,
                    store=res.store,
                    encoder=res.encoder,
                    options=res.options(),
                )
            ops.record_job(job)
            return job
        except LeaseHeldError:
            return res.jobs.get(job_id)
        except Exception as exc:  # no broker to retry through: settle the job here
            log.exception("in-process ingestion of job %s failed", job_id)
            message = f"ingestion failed with an outage and there is no queue to retry it: {exc}"
            return pipeline.fail_job(
                job_id, message, code="unavailable", jobs=res.jobs, store=res.store
            )

    def close(self, *, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
