"""The Celery app's settings, the error classification and the task's retry policy."""

from __future__ import annotations

import pytest
from celery.exceptions import Retry
from workers_testkit import write_h5ad

from celldata.errors import NotRawCountsError
from cellsearch.ingest.pipeline import IngestOptions
from cellsearch.ingest.runner import Resources
from cellsearch.platform.errors import PathNotAllowedError, is_transient
from cellsearch.platform.jobs import (
    INGEST_QUEUE,
    INGEST_TASK,
    JobState,
    MemoryJobStore,
    queue_name,
)
from workers.app import make_celery
from workers.runtime import install_resources, worker_plan
from workers.tasks import MAX_RETRIES, retry_countdown


@pytest.fixture
def app(settings):
    return make_celery(settings, visibility_timeout_s=7)


def test_app_is_configured_for_safe_redelivery(app, settings) -> None:
    conf = app.conf
    assert conf.broker_url == settings.redis_url
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    ns = settings.jobs_namespace
    assert {q.name for q in conf.task_queues} == {f"{ns}.ingest", f"{ns}.default"}
    assert conf.task_routes[INGEST_TASK] == {"queue": queue_name(ns, INGEST_QUEUE)}
    assert conf.broker_transport_options["visibility_timeout"] == 7
    assert conf.broker_transport_options["unacked_restore_interval"] == 1
    assert conf.task_soft_time_limit < conf.task_time_limit
    assert INGEST_TASK in app.tasks


def test_transient_errors_are_outages_not_bad_inputs() -> None:
    import redis

    assert is_transient(ConnectionError("refused"))
    assert is_transient(redis.exceptions.ConnectionError("redis down"))
    try:
        try:
            raise TimeoutError("slow")
        except TimeoutError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert is_transient(outer)
    assert not is_transient(NotRawCountsError("log-normalised"))
    assert not is_transient(PathNotAllowedError("outside"))
    assert not is_transient(ValueError("bug"))


def test_backoff_grows_and_is_capped() -> None:
    assert 1.0 <= retry_countdown(0) <= 2.0
    assert 8.0 <= retry_countdown(3) <= 16.0
    assert retry_countdown(30) <= 300.0


def test_worker_plan_never_forks_an_embedded_store(settings) -> None:
    assert worker_plan(settings) == ("threads", 1)
    assert worker_plan(settings, concurrency=2) == ("threads", 2)
    with pytest.raises(ValueError, match="cannot fork"):
        worker_plan(settings, pool="prefork")


class UnreachableStore:
    """A store whose server is down: every write is refused (fault injection)."""

    def upsert(self, records) -> None:
        raise ConnectionError("qdrant:6334 refused the connection")

    def upsert_grouped(self, dataset_id, cell_ids, vectors, payloads, group) -> None:
        raise ConnectionError("qdrant:6334 refused the connection")

    def delete_dataset(self, dataset_id: str) -> int:
        return 0


@pytest.mark.integration
def test_task_retries_outages_then_fails_the_job(app, settings, tiny_encoder) -> None:
    """The real task, run eagerly: an outage asks for a retry; the last retry fails the job."""
    inbox = settings.allowed_roots[0]
    path = write_h5ad(inbox / "a.h5ad", 20)
    jobs = MemoryJobStore()
    install_resources(
        app,
        Resources(
            store=UnreachableStore(),
            encoder=tiny_encoder,
            jobs=jobs,
            ingest_options=IngestOptions(
                allowed_roots=(inbox,), chunk_cells=10, validator=_accept, optimize=False
            ),
            owns_store=False,
        ),
    )
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    job = jobs.create(path=str(path), study_id="S", dataset_id="D", metadata={})
    task = app.tasks[INGEST_TASK]
    with pytest.raises(Retry, match="refused the connection"):
        task.apply(args=[job.job_id])
    waiting = jobs.get(job.job_id)
    assert not waiting.state.terminal
    assert "transient" in waiting.error
    with pytest.raises(ConnectionError):
        task.apply(args=[job.job_id], retries=MAX_RETRIES)
    done = jobs.get(job.job_id)
    assert done.state is JobState.FAILED
    assert done.error_code == "unavailable"
    assert done.attempts == 2
    assert "gave up after 8 retries" in done.error


def _accept(path, vocabulary):
    from cellsearch.ingest.pipeline import ValidationSummary

    return ValidationSummary(20, len(vocabulary), len(vocabulary))


def test_limits_and_index_build_come_from_settings(settings) -> None:
    from cellsearch.ingest.runner import ingest_options
    from workers.tasks import OPTIMIZE_TASK

    custom = settings.model_copy(
        update={
            "ingest_visibility_timeout_s": 11.0,
            "ingest_time_limit_s": 1000.0,
            "ingest_optimize": False,
        }
    )
    app = make_celery(custom)
    assert app.conf.broker_transport_options["visibility_timeout"] == 11.0
    assert app.conf.task_time_limit == 1000.0
    assert app.conf.task_soft_time_limit == 900.0
    assert app.conf.task_routes[OPTIMIZE_TASK] == {"queue": f"{settings.jobs_namespace}.default"}
    assert OPTIMIZE_TASK in app.tasks
    assert ingest_options(custom).optimize is False
    assert ingest_options(settings).optimize is settings.ingest_optimize
