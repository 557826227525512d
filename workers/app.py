"""The Celery application, built from :class:`~cellsearch.platform.settings.Settings`.

Redis is broker and result backend. Ingestion tasks are idempotent (deterministic point
ids, resumable progress), which is what makes ``acks_late`` safe: a message is acknowledged
only after its task returns, so a worker killed mid-job leaves the message unacknowledged
and Redis hands it to another worker once ``visibility_timeout`` has passed.
``prefetch_multiplier=1`` keeps a busy worker from sitting on jobs that an idle one could run.

``celery -A workers.app worker`` finds ``app`` here, built lazily on first access (settings
from the environment); ``cellsearch worker`` and the embedded mode build their own with
:func:`make_celery`.
"""

from __future__ import annotations

import functools

from celery import Celery
from kombu import Queue

from cellsearch.platform.jobs import DEFAULT_QUEUE, INGEST_QUEUE, INGEST_TASK, queue_name
from cellsearch.platform.settings import Settings, get_settings
from workers.tasks import OPTIMIZE_TASK, register_tasks

# ``settings.ingest_visibility_timeout_s``: seconds an unacknowledged message stays invisible
# before Redis redelivers it. A job killed with its worker is retried after this long; a job
# *running* longer than this is handed to a second worker too (harmless: both write the same
# points, the first to finish wins), so it should exceed a typical job. Tests pass a few seconds.

#: The soft time limit falls this long before the hard one.
SOFT_LIMIT_MARGIN_S = 300.0


def make_celery(
    settings: Settings,
    *,
    visibility_timeout_s: float | None = None,
    soft_time_limit_s: float | None = None,
    time_limit_s: float | None = None,
    name: str = "cellsearch",
) -> Celery:
    """A Celery app on ``settings.redis_url`` with the ingestion task registered.

    Unset limits come from settings: ``ingest_visibility_timeout_s`` and
    ``ingest_time_limit_s`` (the soft limit 5 minutes before it, so a job can record its
    failure before the hard kill).
    """
    if visibility_timeout_s is None:
        visibility_timeout_s = settings.ingest_visibility_timeout_s
    if time_limit_s is None:
        time_limit_s = settings.ingest_time_limit_s
    if soft_time_limit_s is None:
        soft_time_limit_s = max(time_limit_s - SOFT_LIMIT_MARGIN_S, time_limit_s * 0.9)
    app = Celery(name, broker=settings.redis_url, backend=settings.redis_url, set_as_current=False)
    ingest, default = (
        queue_name(settings.jobs_namespace, q) for q in (INGEST_QUEUE, DEFAULT_QUEUE)
    )
    transport = {
        "visibility_timeout": visibility_timeout_s,
        # Every live worker sweeps for messages unacked longer than the timeout this often
        # (kombu's default sweep is every 100 s; a short timeout wants a short sweep).
        "unacked_restore_interval": max(1, min(30, int(visibility_timeout_s // 4))),
        "unacked_restore_throttle": 1,
        "unacked_restore_limit": 100,
    }
    app.conf.update(
        task_queues=(Queue(ingest), Queue(default)),
        task_default_queue=default,
        task_routes={INGEST_TASK: {"queue": ingest}, OPTIMIZE_TASK: {"queue": default}},
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=soft_time_limit_s,
        task_time_limit=time_limit_s,
        task_track_started=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=7 * 24 * 3600,
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    app.conf.cellsearch_settings = settings
    register_tasks(app)
    return app


def __getattr__(name: str) -> Celery:
    """``workers.app.app``: the app ``celery -A workers.app`` finds, built on first access
    from the CELLSEARCH_* environment (importing this module builds nothing and reads no
    environment)."""
    if name in ("app", "celery"):
        return _default_app()
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


@functools.cache
def _default_app() -> Celery:
    return make_celery(get_settings())
