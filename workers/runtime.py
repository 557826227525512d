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
* **No Redis**: :class:`InProcessSubmitter` runs jobs on a background thread of the service.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import scipy.sparse as sp

from cellsearch import ops
from cellsearch.jobs import (
    DEFAULT_QUEUE,
    INGEST_QUEUE,
    INGEST_TASK,
    Job,
    JobStore,
    MemoryJobStore,
    RedisJobStore,
)
from cellsearch.settings import Settings
from vectorstore import CellStore, open_store
from workers import pipeline
from workers.app import make_celery
from workers.recovery import LeaseHeldError, Reaper, leased, unfinished

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger(__name__)

QUEUES: tuple[str, ...] = (INGEST_QUEUE, DEFAULT_QUEUE)
Pool = Literal["threads", "prefork", "solo"]


# ------------------------------------------------------------------------------ resources


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


def open_settings_store(settings: Settings) -> CellStore:
    """The store named by settings: a Qdrant server by URL, else the embedded shard."""
    key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
    if settings.qdrant_url:
        return open_store(
            url=settings.qdrant_url,
            api_key=key,
            collection=settings.collection,
            config=settings.store_config(),
        )
    return open_store(
        path=settings.store_path, collection=settings.collection, config=settings.store_config()
    )


def resolve_device(settings: Settings, *, gpu_index: int | None = None) -> str:
    """``cuda:i`` for the i-th worker process on a GPU machine, else ``cpu``."""
    if settings.device == "cpu":
        return "cpu"
    n_gpus = gpu_count()
    if n_gpus == 0:
        if settings.device == "cuda":
            msg = "CELLSEARCH_DEVICE=cuda but torch sees no GPU; use auto or cpu"
            raise RuntimeError(msg)
        return "cpu"
    return f"cuda:{(gpu_index or 0) % n_gpus}"


def gpu_count() -> int:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return 0
    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def load_encoder(settings: Settings, *, device: str = "cpu") -> pipeline.Encoder:
    """The configured encoder checkpoint (or the bundled default) on ``device``."""
    import encoder as enc_pkg

    if settings.model_dir is not None:
        loader = enc_pkg.CellEncoder.load
        args: tuple[Any, ...] = (settings.model_dir,)
    else:
        loader = enc_pkg.load_default
        args = ()
    kwargs = {"device": device} if "device" in inspect.signature(loader).parameters else {}
    return loader(*args, **kwargs)


def warm_ontologies(settings: Settings) -> None:
    """Load the ontology closures now so the first chunk does not pay for it."""
    import ontology
    from celldata.validate import verify_assays

    for kind in ontology.KINDS:
        ontology.get_ontology(kind, cache_dir=settings.ontology_cache_dir)
    verify_assays({"EFO:0009922"}, "warm-up")  # loads the EFO terms (~0.2 s holding the GIL)


def warm_encoder(encoder: pipeline.Encoder) -> None:
    """Embed a few cells now, so the first job does not pay for compiling the CPU kernel.

    The sparse embedder's numba kernel compiles on its first call (seconds, ~15 s on a busy
    2-core machine); a worker does that once at start-up instead of inside a job.
    """
    genes = list(encoder.genes)
    rng = np.random.default_rng(0)
    x = sp.random(8, len(genes), density=0.05, format="csr", random_state=rng, dtype=np.float32)
    x.data = np.ceil(x.data * 10)
    encoder.embed(x, gene_names=genes, batch_size=8)


def open_resources(
    settings: Settings,
    *,
    store: CellStore | None = None,
    encoder: pipeline.Encoder | None = None,
    jobs: JobStore | None = None,
    device: str | None = None,
) -> Resources:
    """Open whatever is not passed in; passed-in objects stay owned by the caller."""
    owns_store = store is None
    if jobs is None:
        jobs = RedisJobStore(settings.redis_url)
    if encoder is None:
        encoder = load_encoder(settings, device=device or resolve_device(settings))
    warm_ontologies(settings)
    warm_encoder(encoder)
    if store is None:
        store = open_settings_store(settings)
    return Resources(
        store=store,
        encoder=encoder,
        jobs=jobs,
        ingest_options=ingest_options(settings),
        owns_store=owns_store,
        lease_s=settings.job_lease_s,
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
    queues: Sequence[str] = QUEUES,
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
    log.info("worker: pool=%s concurrency=%d queues=%s", pool, concurrency, ",".join(queues))
    reaper = start_reaper(app, resources.jobs if resources else RedisJobStore(settings.redis_url))
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
    """Re-enqueue jobs orphaned by a dead worker (see ``workers.recovery``), in a thread."""
    settings: Settings = app.conf.cellsearch_settings

    def enqueue(job_id: str) -> None:
        app.send_task(INGEST_TASK, args=[job_id], queue=INGEST_QUEUE)

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
    encoder: pipeline.Encoder,
    jobs: JobStore,
    concurrency: int = 1,
    queues: Sequence[str] = QUEUES,
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
        Resources(
            store=store,
            encoder=encoder,
            jobs=jobs,
            ingest_options=ingest_options(settings),
            owns_store=False,
            lease_s=settings.job_lease_s,
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
        queues=list(queues),
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


# ------------------------------------------------------------------------------ submitting


class Submitter(Protocol):
    """What the service calls to start an ingestion (it never imports workers)."""

    def __call__(
        self, *, path: str, study_id: str, dataset_id: str, metadata: Mapping[str, str]
    ) -> Job: ...


class _Submitter:
    """Record a job, then hand its id to ``enqueue``: the one submit path of every mode."""

    jobs: JobStore

    def __call__(
        self, *, path: str, study_id: str, dataset_id: str, metadata: Mapping[str, str]
    ) -> Job:
        job = self.jobs.create(
            path=path, study_id=study_id, dataset_id=dataset_id, metadata=metadata, claim=True
        )
        self.enqueue(job.job_id)
        return job

    def enqueue(self, job_id: str) -> None:
        raise NotImplementedError


class CelerySubmitter(_Submitter):
    """Record a job, then enqueue ``INGEST_TASK`` by name on the ingest queue."""

    def __init__(self, app: Celery, jobs: JobStore) -> None:
        self.app = app
        self.jobs = jobs

    def enqueue(self, job_id: str) -> None:
        self.app.send_task(INGEST_TASK, args=[job_id], queue=INGEST_QUEUE)


class InProcessSubmitter(_Submitter):
    """The embedded mode without Redis: jobs run one at a time on a background thread."""

    def __init__(self, resources: Resources) -> None:
        self.resources = resources
        self.jobs = resources.jobs
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cellsearch-ingest")
        self.futures: dict[str, Future[Job]] = {}

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        store: CellStore,
        encoder: pipeline.Encoder,
        jobs: JobStore | None = None,
    ) -> InProcessSubmitter:
        return cls(
            Resources(
                store=store,
                encoder=encoder,
                jobs=MemoryJobStore() if jobs is None else jobs,
                ingest_options=ingest_options(settings),
                owns_store=False,
                lease_s=settings.job_lease_s,
            )
        )

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
