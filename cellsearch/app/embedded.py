"""The embedded platform: one process holding the store, a gRPC server and an ingestion worker.

The one place allowed to see both ``services`` and ``workers``, so the server and the
ingestion worker share the process's only handle on the embedded store. With Redis
answering, jobs travel through Celery to a worker thread (the same path a separate worker
process takes); without it, a background thread runs the pipeline and job records live in
a sqlite file beside the store.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from cellsearch.platform.settings import Settings

log = logging.getLogger(__name__)


def redis_answers(url: str, timeout_s: float = 0.5) -> bool:
    """True when a Redis server answers PING at ``url`` within ``timeout_s``."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False
    finally:
        client.close()


@dataclass
class Platform:
    """A running embedded platform; :meth:`stop` undoes :func:`start_platform`."""

    settings: Settings
    server: Any
    port: int
    store: Any
    encoder: Any
    jobs: Any
    mode: str  # "redis" or "in-process"
    _stops: list[Any] = field(default_factory=list)

    @property
    def address(self) -> str:
        host = self.settings.grpc_address.rsplit(":", 1)[0] or "127.0.0.1"
        host = "127.0.0.1" if host in ("0.0.0.0", "[::]", "") else host
        return f"{host}:{self.port}"

    def stop(self, grace: float | None = None) -> None:
        """Stop the server (in-flight calls finish), then the worker, then close the store."""
        from services.search.server import stop_server

        stop_server(
            self.server,
            self.settings.shutdown_grace_s if grace is None else grace,
            drain_s=self.settings.drain_s if grace is None else 0.0,
        )
        for stop in reversed(self._stops):
            try:
                stop()
            except Exception:  # keep closing the rest: the store must be released
                log.exception("while stopping the embedded platform")
        self.store.close()


def start_platform(
    settings: Settings,
    *,
    use_redis: bool | None = None,
    with_worker: bool = True,
    encoder: Any = None,
) -> Platform:
    """Open the store and encoder once, start a worker and the gRPC server over them.

    ``use_redis``: None picks Redis when it answers at ``settings.redis_url``; its job records,
    dataset registry and queues are the store's own (``Settings.jobs_namespace``).
    """
    from cellsearch.ingest.runner import InProcessRunner, Resources
    from cellsearch.platform.factories import load_encoder, open_store, warm_ontologies
    from cellsearch.platform.jobs import RedisJobStore, SqliteJobStore
    from cellsearch.platform.submit import celery_enqueue
    from services.search.server import build_server

    if use_redis is None:
        use_redis = redis_answers(settings.redis_url)
    store = open_store(settings)
    stops: list[Any] = []
    if settings.embedded_index_build == "at_start":
        # Build now, before the server reports SERVING, and never while it serves (the
        # worker thread skips it). The default builds after each job on a copy in a
        # subprocess instead, which serving does not wait for (vectorstore.offline).
        settings = settings.model_copy(update={"ingest_optimize": False})
        build_index_before_serving(store)
    try:
        enc = encoder if encoder is not None else load_encoder(settings)
        warm_ontologies(settings)  # now, not in the first job while serving
        if use_redis:
            from workers.runtime import start_worker_thread

            jobs: Any = RedisJobStore.for_settings(settings)
            submit = celery_enqueue(settings.redis_url, settings.jobs_namespace)
            if with_worker:
                handle = start_worker_thread(settings, store=store, encoder=enc, jobs=jobs)
                stops.append(handle.stop)
        else:
            # jobs and the dataset registry in a sqlite file beside the store: they survive
            # a restart, and the unfinished jobs are resumed below
            jobs = SqliteJobStore.for_settings(settings)
            stops.append(jobs.close)
            submitter = InProcessRunner(
                Resources.from_settings(
                    settings, store=store, encoder=enc, jobs=jobs, owns_store=False
                )
            )
            submit = submitter.enqueue
            stops.append(submitter.close)
            submitter.resume()
        server, port = build_server(settings, store=store, encoder=enc, jobs=jobs, submit=submit)
    except BaseException:
        for stop in reversed(stops):
            stop()
        store.close()
        raise
    return Platform(
        settings=settings,
        server=server,
        port=port,
        store=store,
        encoder=enc,
        jobs=jobs,
        mode="redis" if use_redis else "in-process",
        _stops=stops,
    )


def build_index_before_serving(store: Any) -> None:
    """Index what the last run left unindexed (an ingestion's segments), before serving."""
    stats = store.info()
    if stats.get("indexed_vectors", 0) >= stats.get("points", 0):
        return
    started = time.perf_counter()
    log.info("building the index of %d cells before serving", stats.get("points", 0))
    store.optimize()
    log.info("index built in %.1f s", time.perf_counter() - started)


def start_ops(settings: Settings, *, jobs: Any = None, store: Any = None) -> int | None:
    """Logging and the metrics endpoint of a ``serve`` or ``worker`` process."""
    from cellsearch.platform import ops

    return ops.start_for(settings, jobs=jobs, store=store)
