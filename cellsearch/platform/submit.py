"""Hand an ingestion job to the Celery workers by task name.

The service, the embedded platform and the workers' own reaper all enqueue through this
one function, so the task name and queue are written once (``jobs.INGEST_TASK``, the
namespace's ``jobs.INGEST_QUEUE``) and the service never imports the workers package.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from cellsearch.platform.jobs import INGEST_QUEUE, INGEST_TASK, queue_name

if TYPE_CHECKING:
    from celery import Celery

Enqueue = Callable[[str], None]
"""Start ingestion job ``job_id`` somewhere (a worker queue, a thread); returns quickly."""


def enqueue_with(app: Celery, namespace: str) -> Enqueue:
    """Enqueue on ``namespace``'s ingestion queue through ``app`` (a worker's, or a producer)."""
    queue = queue_name(namespace, INGEST_QUEUE)

    def enqueue(job_id: str) -> None:
        app.send_task(INGEST_TASK, args=[job_id], queue=queue)

    return enqueue


def celery_enqueue(redis_url: str, namespace: str) -> Enqueue:
    """Enqueue through a bare Celery producer on ``redis_url`` (no task code imported)."""
    from celery import Celery

    app = Celery("cellsearch-producer", broker=redis_url, set_as_current=False)
    app.conf.broker_connection_retry_on_startup = False
    app.conf.broker_transport_options = {"max_retries": 1}
    return enqueue_with(app, namespace)
