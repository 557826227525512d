"""Ingestion job records and the dataset registry: what the service reads and the workers write.

Both sides import this module, never each other: the gRPC service creates a job and
enqueues the Celery task *by name* (``INGEST_TASK``); a worker runs the task, moving the
job through its states and recording progress here. Two backends share one interface:

* ``RedisJobStore`` (the platform default): a hash per job, so any number of service
  replicas and workers see the same record; updates are published on a channel per job so
  ``WatchJob`` streams them without polling.
* ``MemoryJobStore``: for the embedded single-process mode without Redis, where ingestion
  runs in-process through the same pipeline.

Progress only moves forward (a redelivered task re-reports cells it already wrote) and a
job in a terminal state stays there: a late update from a killed worker cannot resurrect
a cancelled job.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from functools import partial
from typing import Any, Protocol

INGEST_TASK = "cellsearch.ingest_dataset"
"""Celery task name of an ingestion job; its only argument is the job id."""

INGEST_QUEUE = "ingest"
DEFAULT_QUEUE = "default"


class JobState(StrEnum):
    PENDING = "PENDING"
    VALIDATING = "VALIDATING"
    EMBEDDING = "EMBEDDING"
    UPSERTING = "UPSERTING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


class JobNotFoundError(LookupError):
    """No job has this id."""


class DatasetNotFoundError(LookupError):
    """No dataset with this id is registered."""


@dataclass(frozen=True)
class Job:
    """One ingestion job as the service shows it to clients."""

    job_id: str
    dataset_id: str
    study_id: str
    path: str
    metadata: dict[str, str] = field(default_factory=dict)
    state: JobState = JobState.PENDING
    cells_done: int = 0
    cells_total: int = 0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    error: str = ""
    error_code: str = ""
    attempts: int = 0
    cancel_requested: bool = False
    created_at: float = 0.0
    updated_at: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Job:
        data = json.loads(text)
        data["state"] = JobState(data["state"])
        return cls(**data)


@dataclass(frozen=True)
class DatasetEntry:
    """A dataset in the atlas: what was ingested, by which model, how well its genes matched."""

    dataset_id: str
    study_id: str
    path: str
    n_cells: int
    genes_matched: int
    genes_total: int
    model_version: str
    job_id: str
    metadata: dict[str, str] = field(default_factory=dict)
    ingested_at: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> DatasetEntry:
        return cls(**json.loads(text))


class JobStore(Protocol):
    """Where job records and the dataset registry live."""

    def create(
        self, *, path: str, study_id: str, dataset_id: str, metadata: Mapping[str, str]
    ) -> Job: ...

    def get(self, job_id: str) -> Job: ...

    def update(self, job_id: str, **changes: Any) -> Job:
        """Apply ``changes``; progress never decreases and terminal states are final."""
        ...

    def request_cancel(self, job_id: str) -> Job: ...

    def list_jobs(self, limit: int = 100) -> list[Job]: ...

    def watch(self, job_id: str, *, timeout_s: float | None = None) -> Iterator[Job]:
        """Yield the job now and after every change, until it reaches a terminal state."""
        ...

    def register_dataset(self, entry: DatasetEntry) -> None: ...

    def get_dataset(self, dataset_id: str) -> DatasetEntry: ...

    def list_datasets(self) -> list[DatasetEntry]: ...

    def remove_dataset(self, dataset_id: str) -> None: ...


def new_job(*, path: str, study_id: str, dataset_id: str, metadata: Mapping[str, str]) -> Job:
    now = time.time()
    return Job(
        job_id=uuid.uuid4().hex,
        dataset_id=dataset_id,
        study_id=study_id,
        path=path,
        metadata=dict(metadata),
        created_at=now,
        updated_at=now,
    )


def merge(job: Job, changes: Mapping[str, Any]) -> Job:
    """The rules every backend applies: monotone progress, sticky terminal states."""
    if job.state.terminal and "state" in changes and JobState(changes["state"]) != job.state:
        return job
    changes = dict(changes)
    if "state" in changes:
        changes["state"] = JobState(changes["state"])
    if "cells_done" in changes:
        changes["cells_done"] = max(job.cells_done, int(changes["cells_done"]))
    if "stage_seconds" in changes:
        changes["stage_seconds"] = {**job.stage_seconds, **changes["stage_seconds"]}
    return replace(job, **changes, updated_at=time.time())


class MemoryJobStore:
    """In-process job records for the embedded mode without Redis."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._datasets: dict[str, DatasetEntry] = {}
        self._changed = threading.Condition()

    def create(
        self, *, path: str, study_id: str, dataset_id: str, metadata: Mapping[str, str]
    ) -> Job:
        job = new_job(path=path, study_id=study_id, dataset_id=dataset_id, metadata=metadata)
        with self._changed:
            self._jobs[job.job_id] = job
            self._changed.notify_all()
        return job

    def get(self, job_id: str) -> Job:
        try:
            return self._jobs[job_id]
        except KeyError:
            msg = f"no ingestion job with id {job_id!r}"
            raise JobNotFoundError(msg) from None

    def update(self, job_id: str, **changes: Any) -> Job:
        with self._changed:
            job = merge(self.get(job_id), changes)
            self._jobs[job_id] = job
            self._changed.notify_all()
        return job

    def request_cancel(self, job_id: str) -> Job:
        return self.update(job_id, cancel_requested=True)

    def list_jobs(self, limit: int = 100) -> list[Job]:
        jobs = sorted(self._jobs.values(), key=lambda j: j.created_at, reverse=True)
        return jobs[:limit]

    def watch(self, job_id: str, *, timeout_s: float | None = None) -> Iterator[Job]:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        last = self.get(job_id)
        yield last
        while not last.state.terminal:
            with self._changed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return
                self._changed.wait_for(partial(self._changed_since, last), timeout=remaining)
            current = self.get(job_id)
            if current != last:
                last = current
                yield last

    def _changed_since(self, job: Job) -> bool:
        return self.get(job.job_id) != job

    def register_dataset(self, entry: DatasetEntry) -> None:
        self._datasets[entry.dataset_id] = entry

    def get_dataset(self, dataset_id: str) -> DatasetEntry:
        try:
            return self._datasets[dataset_id]
        except KeyError:
            msg = f"no dataset with id {dataset_id!r} is in the atlas"
            raise DatasetNotFoundError(msg) from None

    def list_datasets(self) -> list[DatasetEntry]:
        return sorted(self._datasets.values(), key=lambda d: d.dataset_id)

    def remove_dataset(self, dataset_id: str) -> None:
        self.get_dataset(dataset_id)
        del self._datasets[dataset_id]


class RedisJobStore:
    """Job records in Redis, shared by every service replica and worker."""

    def __init__(self, redis_url: str, *, prefix: str = "cellsearch") -> None:
        import redis

        self._redis = redis.Redis.from_url(redis_url)
        self._prefix = prefix

    def _job_key(self, job_id: str) -> str:
        return f"{self._prefix}:job:{job_id}"

    def _channel(self, job_id: str) -> str:
        return f"{self._prefix}:job:{job_id}:events"

    def _dataset_key(self, dataset_id: str) -> str:
        return f"{self._prefix}:dataset:{dataset_id}"

    def create(
        self, *, path: str, study_id: str, dataset_id: str, metadata: Mapping[str, str]
    ) -> Job:
        job = new_job(path=path, study_id=study_id, dataset_id=dataset_id, metadata=metadata)
        pipe = self._redis.pipeline()
        pipe.set(self._job_key(job.job_id), job.to_json())
        pipe.zadd(f"{self._prefix}:jobs", {job.job_id: job.created_at})
        pipe.execute()
        return job

    def get(self, job_id: str) -> Job:
        raw = self._redis.get(self._job_key(job_id))
        if raw is None:
            msg = f"no ingestion job with id {job_id!r}"
            raise JobNotFoundError(msg)
        return Job.from_json(raw)

    def update(self, job_id: str, **changes: Any) -> Job:
        import redis

        key = self._job_key(job_id)
        with self._redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    if raw is None:
                        msg = f"no ingestion job with id {job_id!r}"
                        raise JobNotFoundError(msg)
                    job = merge(Job.from_json(raw), changes)
                    pipe.multi()
                    pipe.set(key, job.to_json())
                    pipe.publish(self._channel(job_id), job.to_json())
                    pipe.execute()
                    return job
                except redis.WatchError:
                    continue

    def request_cancel(self, job_id: str) -> Job:
        return self.update(job_id, cancel_requested=True)

    def list_jobs(self, limit: int = 100) -> list[Job]:
        ids = self._redis.zrevrange(f"{self._prefix}:jobs", 0, limit - 1)
        raws = self._redis.mget([self._job_key(i.decode()) for i in ids]) if ids else []
        return [Job.from_json(raw) for raw in raws if raw is not None]

    def watch(self, job_id: str, *, timeout_s: float | None = None) -> Iterator[Job]:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(self._channel(job_id))
        try:
            last = self.get(job_id)  # read after subscribing: no update can fall between
            yield last
            while not last.state.terminal:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return
                wait = 1.0 if remaining is None else min(1.0, remaining)
                message = pubsub.get_message(timeout=wait)
                current = Job.from_json(message["data"]) if message else self.get(job_id)
                if current.updated_at > last.updated_at or current.state != last.state:
                    last = current
                    yield last
        finally:
            pubsub.close()

    def register_dataset(self, entry: DatasetEntry) -> None:
        pipe = self._redis.pipeline()
        pipe.set(self._dataset_key(entry.dataset_id), entry.to_json())
        pipe.sadd(f"{self._prefix}:datasets", entry.dataset_id)
        pipe.execute()

    def get_dataset(self, dataset_id: str) -> DatasetEntry:
        raw = self._redis.get(self._dataset_key(dataset_id))
        if raw is None:
            msg = f"no dataset with id {dataset_id!r} is in the atlas"
            raise DatasetNotFoundError(msg)
        return DatasetEntry.from_json(raw)

    def list_datasets(self) -> list[DatasetEntry]:
        ids = sorted(i.decode() for i in self._redis.smembers(f"{self._prefix}:datasets"))
        raws = self._redis.mget([self._dataset_key(i) for i in ids]) if ids else []
        return [DatasetEntry.from_json(raw) for raw in raws if raw is not None]

    def remove_dataset(self, dataset_id: str) -> None:
        self.get_dataset(dataset_id)
        pipe = self._redis.pipeline()
        pipe.delete(self._dataset_key(dataset_id))
        pipe.srem(f"{self._prefix}:datasets", dataset_id)
        pipe.execute()
