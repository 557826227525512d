"""Thin Celery tasks: they take ids, find this process's resources and call the pipeline.

All the work (and all the guarantees) live in :mod:`cellsearch.ingest.pipeline`; a task only adds
what needs Celery: task-state progress, and retries with exponential backoff for transient
outages (store or Redis unreachable). Permanent failures (a bad path or file) are settled
inside the pipeline as a FAILED job and never retried. Tasks are registered by name
(:data:`cellsearch.platform.jobs.INGEST_TASK`) so the service enqueues them without importing us.
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING, Any

from cellsearch.ingest import pipeline
from cellsearch.ingest.recovery import LeaseHeldError, leased
from cellsearch.platform import ops
from cellsearch.platform.errors import is_transient
from cellsearch.platform.jobs import INGEST_TASK, Job, JobNotFoundError

if TYPE_CHECKING:
    from celery import Celery, Task

log = logging.getLogger(__name__)

OPTIMIZE_TASK = "cellsearch.optimize_store"
"""Celery task name that builds the HNSW index of the store (after a bulk load)."""

MAX_RETRIES = 8
RETRY_BASE_S = 2.0
RETRY_MAX_S = 300.0


def retry_countdown(
    retries: int, *, base_s: float = RETRY_BASE_S, max_s: float = RETRY_MAX_S
) -> float:
    """Exponential backoff with full jitter: 2 s, 4 s, 8 s ... capped, so retries spread out."""
    return random.uniform(0.5, 1.0) * min(max_s, base_s * 2**retries)


def run_ingest(task: Task, job_id: str) -> dict[str, Any]:
    """Body of the ingestion task (a plain function so its retry logic is easy to read)."""
    from workers.runtime import resources_for

    resources = None
    try:
        resources = resources_for(task.app)

        def report(job: Job) -> None:
            if task.request.id:  # update_state needs a real task id (not an eager call)
                task.update_state(state="PROGRESS", meta=pipeline.job_summary(job))

        with leased(resources.jobs, job_id, lease_s=resources.lease_s):
            job = pipeline.ingest(
                job_id,
                jobs=resources.jobs,
                store=resources.store,
                encoder=resources.encoder,
                options=resources.options(on_progress=report),
            )
    except LeaseHeldError:
        log.info("ingestion job %s runs on another worker; dropping this copy", job_id)
        return {"job_id": job_id, "state": "RUNNING_ELSEWHERE"}
    except JobNotFoundError:
        log.warning("ingestion job %s is unknown (expired or never created); dropping it", job_id)
        return {"job_id": job_id, "state": "MISSING"}
    except Exception as exc:
        if not is_transient(exc):
            raise
        retries = task.request.retries or 0
        if retries >= MAX_RETRIES:
            message = f"gave up after {retries} retries; last transient error: {exc}"
            if resources is not None:
                pipeline.fail_job(
                    job_id, message, code="unavailable", jobs=resources.jobs, store=resources.store
                )
            raise
        countdown = retry_countdown(retries)
        log.warning(
            "job %s: transient error (%s); retry %d in %.0f s", job_id, exc, retries + 1, countdown
        )
        raise task.retry(exc=exc, countdown=countdown, max_retries=MAX_RETRIES) from exc
    if job.state.terminal:
        ops.record_job(job)
    return dict(pipeline.job_summary(job))


def run_optimize(task: Task) -> dict[str, Any]:
    """Build the HNSW index where the store lives (the deferred step of a bulk load)."""
    import time

    from workers.runtime import resources_for

    resources = resources_for(task.app)
    started = time.perf_counter()
    resources.store.optimize()
    return {"seconds": round(time.perf_counter() - started, 3)}


def register_tasks(app: Celery) -> None:
    """Register the ingestion and optimize tasks on ``app`` under their public names."""

    @app.task(
        name=INGEST_TASK,
        bind=True,
        shared=False,
        acks_late=True,
        reject_on_worker_lost=True,
        max_retries=MAX_RETRIES,
    )
    def ingest_dataset(self: Task, job_id: str) -> dict[str, Any]:
        return run_ingest(self, job_id)

    @app.task(name=OPTIMIZE_TASK, bind=True, shared=False, acks_late=True)
    def optimize_store(self: Task) -> dict[str, Any]:
        return run_optimize(self)
