"""Embedded mode: a Celery worker thread over the caller's own store handle, through Redis."""

from __future__ import annotations

import time

import pytest
from workers_testkit import tiny_validator, write_h5ad

from cellsearch.ingest.submit import submit_ingestion
from cellsearch.platform.jobs import JobState, RedisJobStore
from cellsearch.platform.submit import enqueue_with
from vectorstore import SearchFilter, open_store
from workers.runtime import install_resources, resources_for, start_worker_thread

pytestmark = pytest.mark.integration


def test_worker_thread_ingests_into_the_in_process_store(settings, tiny_encoder) -> None:
    inbox = settings.allowed_roots[0]
    path = write_h5ad(inbox / "a.h5ad", 300)
    store = open_store(path=settings.store_path)
    jobs = RedisJobStore(settings.redis_url, prefix="thread-test")
    handle = start_worker_thread(settings, store=store, encoder=tiny_encoder, jobs=jobs)
    try:
        resources = resources_for(handle.app)
        install_resources(
            handle.app,
            type(resources)(
                **{
                    **vars(resources),
                    "ingest_options": resources.options(validator=tiny_validator(), optimize=False),
                }
            ),
        )
        job = submit_ingestion(
            jobs,
            enqueue_with(handle.app, settings.jobs_namespace),
            path=str(path),
            study_id="S",
            dataset_id="T",
            metadata={},
        )
        deadline = time.monotonic() + 60
        while not jobs.get(job.job_id).state.terminal and time.monotonic() < deadline:
            time.sleep(0.1)
        done = jobs.get(job.job_id)
        assert done.state is JobState.SUCCEEDED, done.error
        # The search path reads this very handle: the points are visible without reopening.
        assert store.count(SearchFilter(must={"dataset_id": ["T"]})) == 300
    finally:
        handle.stop()
        store.close()
    assert not handle.thread.is_alive()
