"""Per-process resources and the ways a worker runs: a thread in the service, a process, or none.

A worker process opens its store, encoder and job store once (not per task): the encoder
takes seconds to load and the embedded store can be opened by one handle only. Three ways
to run, all through the same pipeline:

* **Embedded mode, with Redis**: ``cellsearch serve`` opens the store and calls
  :func:`start_worker_thread` with its own store handle; tasks still travel through Redis
  (``acks_late``), but run in a thread of the process that owns the shard.
* **Worker process** (``cellsearch worker`` / ``python -m workers``): :func:`run_worker`
  opens its own resources. On an embedded store this process owns the store (no other may
  open it); on a Qdrant server (scale mode) any number of workers run side by side, one
  process per GPU.
* **No Redis**: no worker here: ``cellsearch.ingest.runner.InProcessRunner`` runs jobs on a
  background thread of the embedded platform.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from cellsearch.ingest.recovery import Reaper
from cellsearch.ingest.runner import Resources
from cellsearch.platform.factories import (
    gpu_count,
    load_encoder,
    open_store,
    resolve_device,
    warm_encoder,
    warm_ontologies,
)
from cellsearch.platform.jobs import (
    DEFAULT_QUEUE,
    INGEST_QUEUE,
    JobStore,
    RedisJobStore,
    queue_name,
)
from cellsearch.platform.settings import Settings
from cellsearch.platform.submit import enqueue_with
from encoder import CellEncoder
from vectorstore import CellStore
from workers.app import make_celery

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger(__name__)

Pool = Literal["threads", "prefork", "solo"]


def worker_queues(settings: Settings) -> list[str]:
    """The queues a worker of this platform consumes (its namespace's, no one else's)."""
    return [queue_name(settings.jobs_namespace, q) for q in (INGEST_QUEUE, DEFAULT_QUEUE)]


# ------------------------------------------------------------------------------ resources


def open_resources(
    settings: Settings,
    *,
    store: CellStore | None = None,
    encoder: CellEncoder | None = None,
    jobs: JobStore | None = None,
    device: str | None = None,
) -> Resources:
    """Open whatever is not passed in; passed-in objects stay owned by the caller."""
    owns_store = store is None
    if jobs is None:
        jobs = RedisJobStore.for_settings(settings)
    if encoder is None:
        encoder = load_encoder(settings, device=device or resolve_device(settings))
    warm_ontologies(settings)
    warm_encoder(encoder)
    if store is None:
        store = open_store(settings)
    return Resources.from_settings(
        settings, store=store, encoder=encoder, jobs=jobs, owns_store=owns_store
    )


_RESOURCES_ATTR = "_cellsearch_resources"
_LOCK = threading.Lock()


def install_resources(app: Celery, resources: Resources) -> None:
    """Make ``resources`` what every task of ``app`` in this process uses."""
    setattr(app, _RESOURCES_ATTR, resources)


def resources_for(app: Celery) -> Resources:
    """This process's resources for ``app``, opened from its settings on first use."""
    found = getattr(app, _RESOURCES_ATTR, None)
    if found is not None:
        return found
    with _LOCK:
        found = getattr(app, _RESOURCES_ATTR, None)
        if found is None:
            settings: Settings = app.conf.cellsearch_settings
            found = open_resources(settings, device=resolve_device(settings, gpu_index=_child()))
            install_resources(app, found)
    return found


def _child() -> int | None:
    """Index of this prefork child (0..n-1), so each child takes its own GPU."""
    try:
        from billiard.process import current_process
    except ImportError:  # pragma: no cover
        return None
    index = getattr(current_process(), "index", None)
    return int(index) if index is not None else None


# ------------------------------------------------------------------------------ running


def worker_plan(
    settings: Settings, *, concurrency: int | None = None, pool: Pool | None = None
) -> tuple[Pool, int]:
    """(pool, concurrency): threads x1 on CPU or an embedded store, else one process per GPU.

    An embedded store is owned by one process, so its worker never forks. Torch already
    spreads one embedding over every core, so one CPU job at a time is the fastest.
    """
    n_gpus = 0 if settings.device == "cpu" else gpu_count()
    if pool is None:
        pool = "prefork" if settings.qdrant_url and n_gpus > 1 else "threads"
    if pool == "prefork" and not settings.qdrant_url:
        msg = (
            "an embedded store (no CELLSEARCH_QDRANT_URL) is opened by one process only, so its "
            "worker cannot fork; use --pool threads, or a Qdrant server for several processes"
        )
        raise ValueError(msg)
    if concurrency is None:
        concurrency = max(1, n_gpus) if pool == "prefork" else 1
    return pool, concurrency


def run_worker(
    settings: Settings,
    *,
    concurrency: int | None = None,
    queues: Sequence[str] | None = None,
    pool: Pool | None = None,
    visibility_timeout_s: float | None = None,
    loglevel: str = "INFO",
    hostname: str | None = None,
) -> int:
    """Run a worker in this process until it is told to stop (SIGTERM: warm shutdown)."""
    pool, concurrency = worker_plan(settings, concurrency=concurrency, pool=pool)
    app = make_celery(settings, visibility_timeout_s=visibility_timeout_s)
    resources = None
    if pool != "prefork":  # open now: a locked store or a missing model fails at start-up
        resources = open_resources(settings)
        install_resources(app, resources)
    queues = worker_queues(settings) if queues is None else queues
    log.info("worker: pool=%s concurrency=%d queues=%s", pool, concurrency, ",".join(queues))
    jobs = resources.jobs if resources else RedisJobStore.for_settings(settings)
    reaper = start_reaper(app, jobs)
    worker = app.Worker(
        pool_cls=pool,
        concurrency=concurrency,
        queues=list(queues),
        loglevel=loglevel,
        hostname=hostname,
        without_gossip=True,
        without_mingle=True,
        optimization="fair",
    )
    try:
        worker.start()
    finally:
        reaper.stop()
        if resources is not None:
            resources.close()
    return int(worker.exitcode or 0)


def start_reaper(app: Celery, jobs: JobStore) -> Reaper:
    """Re-enqueue jobs orphaned by a dead worker (``cellsearch.ingest.recovery``), in a thread."""
    settings: Settings = app.conf.cellsearch_settings
    enqueue = enqueue_with(app, settings.jobs_namespace)
    return Reaper(jobs, enqueue, lease_s=settings.job_lease_s).start()


class WorkerHandle:
    """A Celery worker running in a thread of this process; :meth:`stop` shuts it down warmly."""

    def __init__(
        self,
        app: Celery,
        controller: Any,
        thread: threading.Thread,
        reaper: Reaper | None = None,
    ) -> None:
        self.app = app
        self.controller = controller
        self.thread = thread
        self.reaper = reaper

    def stop(self, timeout_s: float = 30.0) -> None:
        """Finish the running task, stop consuming, join the thread (store stays open)."""
        from celery.worker import state

        if self.reaper is not None:
            self.reaper.stop()
        state.should_stop = 0
        self.thread.join(timeout_s)
        state.should_stop = None
        if self.thread.is_alive():
            msg = f"the worker thread did not stop within {timeout_s} s (a long task is running)"
            raise RuntimeError(msg)


def start_worker_thread(
    settings: Settings,
    *,
    store: CellStore,
    encoder: CellEncoder,
    jobs: JobStore,
    concurrency: int = 1,
    queues: Sequence[str] | None = None,
    visibility_timeout_s: float | None = None,
    ready_timeout_s: float = 30.0,
    loglevel: str = "WARNING",
) -> WorkerHandle:
    """Run a worker in threads over the caller's store handle (embedded mode with Redis)."""
    from celery.app.trace import setup_worker_optimizations
    from celery.worker import WorkController

    app = make_celery(settings, visibility_timeout_s=visibility_timeout_s)
    setup_worker_optimizations(app)  # the task registry the worker looks names up in
    install_resources(
        app,
        Resources.from_settings(
            settings, store=store, encoder=encoder, jobs=jobs, owns_store=False
        ),
    )
    ready = threading.Event()

    class _Controller(WorkController):
        def on_consumer_ready(self, consumer: Any) -> None:
            ready.set()

    controller = _Controller(
        app=app,
        pool_cls="solo" if concurrency == 1 else "threads",
        concurrency=concurrency,
        queues=worker_queues(settings) if queues is None else list(queues),
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
        loglevel=loglevel,
    )
    thread = threading.Thread(target=controller.start, name="cellsearch-worker", daemon=True)
    thread.start()
    if not ready.wait(ready_timeout_s):
        msg = f"the embedded worker did not connect to {settings.redis_url} in {ready_timeout_s} s"
        raise RuntimeError(msg)
    return WorkerHandle(app, controller, thread, reaper=start_reaper(app, jobs))
