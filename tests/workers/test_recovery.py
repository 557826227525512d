"""Crash recovery: leases, the reaper, and the in-process runner resuming after a restart."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from workers_testkit import TinyEncoder, tiny_validator, write_h5ad

from cellsearch.ingest.pipeline import IngestOptions, default_reader, ingest
from cellsearch.ingest.recovery import LeaseHeldError, Reaper, leased
from cellsearch.ingest.runner import InProcessRunner, Resources
from cellsearch.platform.jobs import JobState, MemoryJobStore, SqliteJobStore
from vectorstore import SearchFilter, open_store


def test_a_second_run_of_a_leased_job_is_dropped():
    jobs = MemoryJobStore()
    job = jobs.create(path="/x", study_id="S", dataset_id="D", metadata={})
    with (
        leased(jobs, job.job_id, lease_s=5.0),
        pytest.raises(LeaseHeldError),
        leased(jobs, job.job_id, lease_s=5.0),
    ):
        pass
    with leased(jobs, job.job_id, lease_s=5.0):  # released at the end of the block
        pass


def test_the_lease_is_renewed_while_the_job_runs():
    jobs = MemoryJobStore()
    job = jobs.create(path="/x", study_id="S", dataset_id="D", metadata={})
    jobs.update(job.job_id, state=JobState.EMBEDDING)
    with leased(jobs, job.job_id, lease_s=0.3):
        time.sleep(1.0)  # three lease periods: the heartbeat kept it
        assert jobs.orphaned_jobs(min_age_s=0.0) == []
    assert [j.job_id for j in jobs.orphaned_jobs(min_age_s=0.0)] == [job.job_id]


def test_the_reaper_enqueues_an_orphan_once_per_period():
    jobs = MemoryJobStore()
    job = jobs.create(path="/x", study_id="S", dataset_id="D", metadata={})
    jobs.update(job.job_id, state=JobState.EMBEDDING, cells_done=64)
    sent: list[str] = []
    reaper = Reaper(jobs, sent.append, lease_s=0.0)
    assert reaper.sweep() == [job.job_id]
    reaper.lease_s = 10.0  # within 2 x lease of the last send: not again
    time.sleep(0.01)
    jobs.update(job.job_id, cells_done=64)  # still orphaned, but updated_at is recent
    assert reaper.sweep() == []
    assert sent == [job.job_id]


def test_a_restarted_in_process_runner_resumes_its_job_with_exactly_the_files_cells(tmp_path):
    inbox = tmp_path / "inbox"
    path = write_h5ad(inbox / "cells.h5ad", 300)
    db = tmp_path / "jobs.sqlite3"
    options = IngestOptions(
        allowed_roots=(inbox,), chunk_cells=64, validator=tiny_validator(), optimize=False
    )
    store = open_store(path=tmp_path / "store")
    try:
        # the first life: two chunks written, then the process died (no clean close)
        first = SqliteJobStore(db)
        job = first.create(path=str(path), study_id="S", dataset_id="D", metadata={}, claim=True)

        def dies_after_two_chunks(p, size, start):
            for i, chunk in enumerate(default_reader(p, size, start)):
                if i == 2:
                    raise ConnectionError("the process is killed here")
                yield chunk

        with pytest.raises(ConnectionError):
            ingest(
                job.job_id,
                jobs=first,
                store=store,
                encoder=TinyEncoder(),
                options=replace(options, reader=dies_after_two_chunks),
            )
        assert first.get(job.job_id).cells_done == 128
        assert store.count(SearchFilter(must={"dataset_id": ["D"]})) == 128
        first._db.close()
        # the second life: the runner finds the job and resumes it
        jobs = SqliteJobStore(db)
        runner = InProcessRunner(
            Resources(
                store=store,
                encoder=TinyEncoder(),
                jobs=jobs,
                ingest_options=options,
                owns_store=False,
                lease_s=1.0,
            )
        )
        assert runner.resume() == [job.job_id]
        done = runner.futures[job.job_id].result(timeout=60)
        runner.close()
        assert done.state == JobState.SUCCEEDED, done.error
        assert store.count(SearchFilter(must={"dataset_id": ["D"]})) == 300  # exactly the file
        jobs.close()
        again = SqliteJobStore(db)
        assert again.get_dataset("D").n_cells == 300  # the registry survived too
        assert again.claim_holder("D") is None
        again.close()
    finally:
        store.close()
