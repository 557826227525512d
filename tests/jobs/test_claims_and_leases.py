"""Dataset-id claims, job leases and the sqlite store: the same behaviour on every backend."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from cellsearch.platform.jobs import (
    DatasetEntry,
    DatasetTakenError,
    JobState,
    MemoryJobStore,
    RedisJobStore,
    SqliteJobStore,
)

#: A database and key prefix of these tests' own: other suites flush database 15.
REDIS_URL = "redis://127.0.0.1:6379/9"


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.integration)])
def jobs(request, tmp_path):
    if request.param == "memory":
        yield MemoryJobStore()
    elif request.param == "sqlite":
        store = SqliteJobStore(tmp_path / "jobs.sqlite3")
        yield store
        store.close()
    else:
        import redis

        prefix = f"t19-{uuid.uuid4().hex[:8]}"
        yield RedisJobStore(REDIS_URL, prefix=prefix)
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(f"{prefix}:*"))
        if keys:
            client.delete(*keys)


def _entry(dataset_id: str, job_id: str) -> DatasetEntry:
    return DatasetEntry(dataset_id, "S", "/in/a.h5ad", 10, 5, 6, "m1", job_id)


def _create(jobs, dataset_id="D1"):
    return jobs.create(
        path="/in/a.h5ad", study_id="S", dataset_id=dataset_id, metadata={}, claim=True
    )


def test_a_dataset_id_in_flight_is_taken(jobs):
    first = _create(jobs)
    with pytest.raises(DatasetTakenError, match="being ingested by job"):
        _create(jobs)
    assert jobs.claim_holder("D1") == first.job_id


def test_a_registered_dataset_id_is_taken(jobs):
    jobs.register_dataset(_entry("D1", "old"))
    with pytest.raises(DatasetTakenError, match="already in the atlas"):
        _create(jobs)


def test_a_claim_of_an_ended_job_is_stale(jobs):
    first = _create(jobs)
    jobs.update(first.job_id, state=JobState.FAILED)
    second = _create(jobs)  # the failed job's claim is taken over
    assert jobs.claim_holder("D1") == second.job_id
    jobs.release_claim("D1", first.job_id)  # a late release by the old job changes nothing
    assert jobs.claim_holder("D1") == second.job_id
    jobs.release_claim("D1", second.job_id)
    assert jobs.claim_holder("D1") is None


def test_racing_submissions_claim_once(jobs):
    won, lost = [], []

    def submit():
        try:
            won.append(_create(jobs, "RACE"))
        except DatasetTakenError:
            lost.append(1)

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
    assert len(lost) == 7


def test_a_lease_has_one_live_owner(jobs):
    job = _create(jobs)
    assert jobs.acquire_lease(job.job_id, "a", ttl_s=0.5)
    assert jobs.acquire_lease(job.job_id, "a", ttl_s=0.5)  # renewal
    assert not jobs.acquire_lease(job.job_id, "b", ttl_s=0.5)
    time.sleep(0.7)
    assert jobs.acquire_lease(job.job_id, "b", ttl_s=0.5)  # lapsed: taken over
    jobs.release_lease(job.job_id, "a")  # not a's any more: no effect
    assert not jobs.acquire_lease(job.job_id, "a", ttl_s=0.5)
    jobs.release_lease(job.job_id, "b")
    assert jobs.acquire_lease(job.job_id, "a", ttl_s=0.5)


def test_a_started_job_without_a_lease_is_orphaned(jobs):
    running, orphan, pending = _create(jobs, "A"), _create(jobs, "B"), _create(jobs, "C")
    for job in (running, orphan):
        jobs.update(job.job_id, state=JobState.EMBEDDING)
    assert jobs.acquire_lease(running.job_id, "w1", ttl_s=30)
    time.sleep(0.05)
    found = {j.job_id for j in jobs.orphaned_jobs(min_age_s=0.0)}
    assert found == {orphan.job_id}  # not the leased one, not the PENDING one
    assert pending.job_id not in found
    assert jobs.orphaned_jobs(min_age_s=60.0) == []  # too recent to call


def test_sqlite_keeps_jobs_claims_and_the_registry_across_a_restart(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    first = SqliteJobStore(path)
    job = first.create(path="/in/a.h5ad", study_id="S", dataset_id="D1", metadata={}, claim=True)
    first.update(job.job_id, state=JobState.EMBEDDING, cells_done=300)
    first.register_dataset(_entry("D0", "older"))
    first._db.close()  # no clean close: what a kill -9 leaves
    again = SqliteJobStore(path)
    assert again.get(job.job_id).cells_done == 300
    assert again.get_dataset("D0").job_id == "older"
    assert again.claim_holder("D1") == job.job_id
    with pytest.raises(DatasetTakenError):
        again.create(path="/x", study_id="S", dataset_id="D1", metadata={}, claim=True)
    again.remove_dataset("D0")
    again.close()
    assert SqliteJobStore(path).list_datasets() == []


def test_sqlite_records_belong_to_one_store(tmp_path):
    """A file without an id adopts the first store; the same store keeps its records; a
    store made again (another id) starts empty instead of inheriting the old registry."""
    path = tmp_path / "jobs.sqlite3"
    legacy = SqliteJobStore(path)
    legacy.register_dataset(_entry("D0", "older"))
    legacy.create(path="/in/a.h5ad", study_id="S", dataset_id="D1", metadata={}, claim=True)
    legacy.close()
    adopted = SqliteJobStore(path, store_id="first")
    assert [d.dataset_id for d in adopted.list_datasets()] == ["D0"]
    adopted.close()
    same = SqliteJobStore(path, store_id="first")
    assert same.claim_holder("D1") is not None
    same.close()
    fresh = SqliteJobStore(path, store_id="second")
    assert fresh.list_datasets() == [] and fresh.list_jobs() == []
    assert fresh.claim_holder("D1") is None
    fresh.create(path="/in/a.h5ad", study_id="S", dataset_id="D1", metadata={}, claim=True)
    fresh.close()
    assert len(SqliteJobStore(path, store_id="second").list_jobs()) == 1
