"""Operating the platform: Prometheus metrics on a port of their own, structured logs.

``serve`` and ``worker`` both call :func:`configure_logging` and :func:`start_metrics`
from their settings (``CELLSEARCH_LOG_FORMAT``, ``CELLSEARCH_LOG_LEVEL``,
``CELLSEARCH_METRICS_PORT``). Every log line of an RPC carries its request id (sent by the
client as ``x-request-id`` metadata, else made up), and so do the lines of the job it
submits (the job id is logged with it).

Metrics (one registry per process; names are part of the deploy guide):

* ``cellsearch_rpc_seconds{method,code}``: latency histogram of every RPC, health included;
* ``cellsearch_rpc_in_flight{method}``, ``cellsearch_watchers``: what holds server threads;
* ``cellsearch_jobs{state}``, ``cellsearch_ingest_queue_depth``, ``cellsearch_store_points``:
  read when scraped, from the job records, the broker and the store;
* ``cellsearch_ingested_cells_total``, ``cellsearch_ingest_cells_per_second``: ingestion rate.
"""

from __future__ import annotations

import contextvars
import json
import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

#: The request id of the RPC (or job) this thread works for; "-" outside of one.
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

REGISTRY = CollectorRegistry(auto_describe=True)
RPC_SECONDS = Histogram(
    "cellsearch_rpc_seconds",
    "RPC latency by method and status code",
    ["method", "code"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
RPC_IN_FLIGHT = Gauge(
    "cellsearch_rpc_in_flight", "RPCs being served", ["method"], registry=REGISTRY
)
WATCHERS = Gauge("cellsearch_watchers", "Open WatchJob streams", registry=REGISTRY)
CELLS_INGESTED = Counter(
    "cellsearch_ingested_cells_total", "Cells written to the store", registry=REGISTRY
)
CELLS_PER_SECOND = Gauge(
    "cellsearch_ingest_cells_per_second",
    "Cells/s of the last finished ingestion job, end to end",
    registry=REGISTRY,
)
JOBS_FINISHED = Counter(
    "cellsearch_jobs_finished_total", "Ingestion jobs ended, by state", ["state"], registry=REGISTRY
)


def record_job(job: Any) -> None:
    """Count a finished job: its state, and for a success its cells and end-to-end rate."""
    state = str(job.state)
    JOBS_FINISHED.labels(state).inc()
    if state == "SUCCEEDED" and job.cells_total:
        CELLS_INGESTED.inc(job.cells_total)
        seconds = max(1e-9, sum(job.stage_seconds.values()))
        CELLS_PER_SECOND.set(job.cells_total / seconds)


def new_request_id() -> str:
    return uuid.uuid4().hex[:16]


class StateCollector(Collector):
    """Gauges read when scraped: job states, queue depth, store size (each may be absent)."""

    def __init__(
        self,
        *,
        job_states: Callable[[], dict[str, int]] | None = None,
        queue_depth: Callable[[], int] | None = None,
        store_points: Callable[[], int] | None = None,
    ) -> None:
        self.job_states = job_states
        self.queue_depth = queue_depth
        self.store_points = store_points

    def collect(self) -> Iterable[GaugeMetricFamily]:
        if self.job_states is not None:
            fam = GaugeMetricFamily("cellsearch_jobs", "Recent jobs by state", labels=["state"])
            for state, n in _quietly(self.job_states, {}).items():
                fam.add_metric([state], n)
            yield fam
        if self.queue_depth is not None:
            yield GaugeMetricFamily(
                "cellsearch_ingest_queue_depth",
                "Ingestion jobs waiting in the broker",
                value=_quietly(self.queue_depth, -1),
            )
        if self.store_points is not None:
            yield GaugeMetricFamily(
                "cellsearch_store_points",
                "Cells in the vector store",
                value=_quietly(self.store_points, -1),
            )


def _quietly(fn: Callable[[], Any], default: Any) -> Any:
    try:
        return fn()
    except Exception:  # a scrape must not fail because a backing service is down
        logging.getLogger(__name__).warning("metrics: %s failed", fn, exc_info=True)
        return default


_collector: StateCollector | None = None


def start_metrics(port: int | None, **sources: Any) -> int | None:
    """Serve ``REGISTRY`` over HTTP on ``port`` (0: any free one); the bound port, or None."""
    global _collector
    if _collector is not None:
        REGISTRY.unregister(_collector)
        _collector = None
    if sources:
        _collector = StateCollector(**sources)
        REGISTRY.register(_collector)
    if port is None:
        return None
    server, _thread = start_http_server(port, addr="0.0.0.0", registry=REGISTRY)
    return int(server.server_port)


def job_states_of(jobs: Any, limit: int = 1000) -> Callable[[], dict[str, int]]:
    def count() -> dict[str, int]:
        out: dict[str, int] = {}
        for job in jobs.list_jobs(limit=limit):
            out[str(job.state)] = out.get(str(job.state), 0) + 1
        return out

    return count


def redis_queue_depth(redis_url: str, queue: str) -> Callable[[], int]:
    def depth() -> int:
        import redis

        client = redis.Redis.from_url(redis_url, socket_timeout=0.5)
        try:
            return int(client.llen(queue))
        finally:
            client.close()

    return depth


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, request id, message (and the error)."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out)


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Root logging for ``serve`` and ``worker``: every line with its request id."""
    handler = logging.StreamHandler()
    handler.addFilter(_RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


def start_for(settings: Any, *, jobs: Any = None, store: Any = None) -> int | None:
    """Logging and metrics of a ``serve``/``worker`` process from its settings; the port.

    ``jobs`` and ``store``: what the job-state and store-size gauges read (when this process
    has them); the queue depth is read from Redis whenever jobs travel through it.
    """
    from cellsearch.platform.jobs import INGEST_QUEUE, RedisJobStore, queue_name

    configure_logging(settings.log_level, settings.log_format)
    sources: dict[str, Any] = {}
    if jobs is not None:
        sources["job_states"] = job_states_of(jobs)
    if store is not None:
        sources["store_points"] = lambda: int(store.count())
    if jobs is None or isinstance(jobs, RedisJobStore):
        queue = queue_name(settings.jobs_namespace, INGEST_QUEUE)
        sources["queue_depth"] = redis_queue_depth(settings.redis_url, queue)
    port = start_metrics(settings.metrics_port, **sources)
    if port is not None:
        logging.getLogger(__name__).warning("Prometheus metrics on port %d (/metrics)", port)
    return port
