"""Job records behave the same on Redis and in memory: the congruence suite."""

from __future__ import annotations

import threading
import time

import pytest

from cellsearch.platform.jobs import (
    DatasetEntry,
    DatasetNotFoundError,
    JobNotFoundError,
    JobState,
    MemoryJobStore,
    RedisJobStore,
)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def jobs(request):
    if request.param == "memory":
        return MemoryJobStore()
    return RedisJobStore(request.getfixturevalue("redis_url"), prefix="test")


def _create(jobs):
    return jobs.create(path="/in/a.h5ad", study_id="S1", dataset_id="D1", metadata={"k": "v"})


def test_create_and_get_round_trip(jobs) -> None:
    job = _create(jobs)
    got = jobs.get(job.job_id)
    assert got == job
    assert got.state is JobState.PENDING
    assert got.metadata == {"k": "v"}


def test_unknown_job_is_not_found(jobs) -> None:
    with pytest.raises(JobNotFoundError, match="no ingestion job with id 'nope'"):
        jobs.get("nope")
    with pytest.raises(JobNotFoundError):
        jobs.update("nope", state=JobState.FAILED)


def test_progress_never_goes_back(jobs) -> None:
    job = _create(jobs)
    jobs.update(job.job_id, state=JobState.EMBEDDING, cells_done=500, cells_total=1000)
    after = jobs.update(job.job_id, cells_done=200)  # a redelivered task re-reporting
    assert after.cells_done == 500
    assert after.cells_total == 1000


def test_terminal_state_is_final(jobs) -> None:
    job = _create(jobs)
    jobs.update(job.job_id, state=JobState.CANCELLED)
    late = jobs.update(job.job_id, state=JobState.SUCCEEDED)
    assert late.state is JobState.CANCELLED


def test_stage_timings_accumulate_by_stage(jobs) -> None:
    job = _create(jobs)
    jobs.update(job.job_id, stage_seconds={"read": 1.0})
    after = jobs.update(job.job_id, stage_seconds={"embed": 2.0})
    assert after.stage_seconds == {"read": 1.0, "embed": 2.0}


def test_list_jobs_newest_first(jobs) -> None:
    first = _create(jobs)
    time.sleep(0.01)
    second = _create(jobs)
    assert [j.job_id for j in jobs.list_jobs()] == [second.job_id, first.job_id]


def test_watch_yields_each_change_until_terminal(jobs) -> None:
    job = _create(jobs)

    def drive() -> None:
        time.sleep(0.1)
        for done in (10, 20, 30):
            jobs.update(job.job_id, state=JobState.EMBEDDING, cells_done=done)
            time.sleep(0.05)
        jobs.update(job.job_id, state=JobState.SUCCEEDED)

    thread = threading.Thread(target=drive)
    thread.start()
    seen = list(jobs.watch(job.job_id, timeout_s=10))
    thread.join()
    assert seen[0].state is JobState.PENDING
    assert seen[-1].state is JobState.SUCCEEDED
    progress = [j.cells_done for j in seen]
    assert progress == sorted(progress)
    assert 30 in progress


def test_watch_stops_at_timeout(jobs) -> None:
    job = _create(jobs)
    start = time.monotonic()
    seen = list(jobs.watch(job.job_id, timeout_s=0.3))
    assert [j.state for j in seen] == [JobState.PENDING]
    assert time.monotonic() - start < 3


def test_dataset_registry(jobs) -> None:
    entry = DatasetEntry(
        dataset_id="D1",
        study_id="S1",
        path="/in/a.h5ad",
        n_cells=10,
        genes_matched=900,
        genes_total=1000,
        model_version="abc",
        job_id="j",
    )
    jobs.register_dataset(entry)
    assert jobs.get_dataset("D1") == entry
    assert jobs.list_datasets() == [entry]
    jobs.remove_dataset("D1")
    with pytest.raises(DatasetNotFoundError, match="'D1'"):
        jobs.get_dataset("D1")
    assert jobs.list_datasets() == []
