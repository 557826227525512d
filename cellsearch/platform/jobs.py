"""Ingestion job records and the dataset registry: what the service reads and the workers write.

Both sides import this module, never each other: the gRPC service creates a job and
enqueues the Celery task *by name* (``INGEST_TASK``); a worker runs the task, moving the
job through its states and recording progress here. Two backends share one interface:

* ``RedisJobStore`` (the platform default): a hash per job, so any number of service
  replicas and workers see the same record; updates are published on a channel per job so
  ``WatchJob`` streams them without polling.
* ``MemoryJobStore``: for the embedded single-process mode without Redis, where ingestion
  runs in-process through the same pipeline; ``SqliteJobStore`` is the same kept in a small
  sqlite file beside the store, so jobs and the dataset registry survive a restart.

A dataset id is *claimed* by the job that creates it (``create(..., claim=True)``): a second
submission for an id that is registered, or held by a job still running, is refused at once
with :class:`DatasetTakenError`. A claim held by a job that ended (or vanished) is stale and
is taken over. A running job also holds a *lease* that its worker renews every few seconds;
a started job whose lease lapsed was orphaned by a crash and is handed out again
(``orphaned_jobs``), so recovery takes seconds instead of the broker's visibility timeout.

Progress only moves forward (a redelivered task re-reports cells it already wrote) and a
job in a terminal state stays there: a late update from a killed worker cannot resurrect
a cancelled job.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cellsearch.platform.errors import AlreadyExistsError, NotFoundError

if TYPE_CHECKING:
    from redis.client import Pipeline

    from cellsearch.platform.settings import Settings

log = logging.getLogger(__name__)

INGEST_TASK = "cellsearch.ingest_dataset"
"""Celery task name of an ingestion job; its only argument is the job id."""

INGEST_QUEUE = "ingest"
DEFAULT_QUEUE = "default"


def queue_name(namespace: str, queue: str) -> str:
    """``queue`` of one platform (``Settings.jobs_namespace``): ``<namespace>.<queue>``."""
    return f"{namespace}.{queue}"


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


class JobNotFoundError(NotFoundError):
    """No job has this id."""


class DatasetNotFoundError(NotFoundError):
    """No dataset with this id is registered."""


class DatasetTakenError(AlreadyExistsError):
    """The dataset id is registered, or claimed by a job still in flight (ALREADY_EXISTS)."""


#: A watch checks its ``stop`` callable at least this often.
WATCH_SLICE_S = 0.25
#: Seconds a job's lease lasts unless its worker renews it (renewed every third of it).
LEASE_S = 15.0


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
        self,
        *,
        path: str,
        study_id: str,
        dataset_id: str,
        metadata: Mapping[str, str],
        claim: bool = False,
    ) -> Job:
        """A new PENDING job; with ``claim``, only if the dataset id is free (else
        :class:`DatasetTakenError`), and the id then belongs to this job."""
        ...

    def release_claim(self, dataset_id: str, job_id: str) -> None:
        """Give up ``job_id``'s claim on ``dataset_id`` (no-op when another job holds it)."""
        ...

    def claim_holder(self, dataset_id: str) -> str | None:
        """The job id holding a claim on ``dataset_id`` (stale or not), if any."""
        ...

    def acquire_lease(self, job_id: str, owner: str, *, ttl_s: float = LEASE_S) -> bool:
        """Take or renew the lease on a running job; False when another live owner has it."""
        ...

    def release_lease(self, job_id: str, owner: str) -> None: ...

    def orphaned_jobs(self, *, min_age_s: float = LEASE_S) -> list[Job]:
        """Started, unfinished jobs without a live lease: their worker died."""
        ...

    def get(self, job_id: str) -> Job: ...

    def update(self, job_id: str, **changes: Any) -> Job:
        """Apply ``changes``; progress never decreases and terminal states are final."""
        ...

    def request_cancel(self, job_id: str) -> Job: ...

    def list_jobs(self, limit: int = 100) -> list[Job]: ...

    def watch(
        self,
        job_id: str,
        *,
        timeout_s: float | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> Iterator[Job]:
        """Yield the job now and after every change, until it reaches a terminal state,
        ``timeout_s`` passes or ``stop()`` is true (checked at least every WATCH_SLICE_S)."""
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


_STARTED = frozenset({"VALIDATING", "EMBEDDING", "UPSERTING"})


def _claim_is_stale(holder: Job | None) -> bool:
    return holder is None or holder.state.terminal


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
        self._claims: dict[str, str] = {}
        self._leases: dict[str, tuple[str, float]] = {}
        self._changed = threading.Condition()

    # persistence hooks (SqliteJobStore); called under self._changed
    def _saved_job(self, job: Job) -> None:
        pass

    def _saved_dataset(self, dataset_id: str, entry: DatasetEntry | None) -> None:
        pass

    def _saved_claim(self, dataset_id: str, job_id: str | None) -> None:
        pass

    def create(
        self,
        *,
        path: str,
        study_id: str,
        dataset_id: str,
        metadata: Mapping[str, str],
        claim: bool = False,
    ) -> Job:
        job = new_job(path=path, study_id=study_id, dataset_id=dataset_id, metadata=metadata)
        with self._changed:
            if claim:
                self._check_free(dataset_id)
                self._claims[dataset_id] = job.job_id
                self._saved_claim(dataset_id, job.job_id)
            self._jobs[job.job_id] = job
            self._saved_job(job)
            self._changed.notify_all()
        return job

    def _check_free(self, dataset_id: str) -> None:
        if dataset_id in self._datasets:
            msg = (
                f"dataset {dataset_id!r} is already in the atlas; choose another dataset id "
                "or delete it first"
            )
            raise DatasetTakenError(msg)
        holder = self._claims.get(dataset_id)
        if holder is not None and not _claim_is_stale(self._jobs.get(holder)):
            msg = (
                f"dataset {dataset_id!r} is being ingested by job {holder}; wait for it to "
                "end (WatchJob) or cancel it, or choose another dataset id"
            )
            raise DatasetTakenError(msg)

    def release_claim(self, dataset_id: str, job_id: str) -> None:
        with self._changed:
            if self._claims.get(dataset_id) == job_id:
                del self._claims[dataset_id]
                self._saved_claim(dataset_id, None)

    def claim_holder(self, dataset_id: str) -> str | None:
        return self._claims.get(dataset_id)

    def acquire_lease(self, job_id: str, owner: str, *, ttl_s: float = LEASE_S) -> bool:
        now = time.monotonic()
        with self._changed:
            held = self._leases.get(job_id)
            if held is not None and held[0] != owner and held[1] > now:
                return False
            self._leases[job_id] = (owner, now + ttl_s)
            return True

    def release_lease(self, job_id: str, owner: str) -> None:
        with self._changed:
            held = self._leases.get(job_id)
            if held is not None and held[0] == owner:
                del self._leases[job_id]

    def orphaned_jobs(self, *, min_age_s: float = LEASE_S) -> list[Job]:
        now, wall = time.monotonic(), time.time()
        with self._changed:
            return [
                j
                for j in self._jobs.values()
                if j.state in _STARTED
                and wall - j.updated_at >= min_age_s
                and self._leases.get(j.job_id, ("", 0.0))[1] <= now
            ]

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
            self._saved_job(job)
            self._changed.notify_all()
        return job

    def request_cancel(self, job_id: str) -> Job:
        return self.update(job_id, cancel_requested=True)

    def list_jobs(self, limit: int = 100) -> list[Job]:
        jobs = sorted(self._jobs.values(), key=lambda j: j.created_at, reverse=True)
        return jobs[:limit]

    def watch(
        self,
        job_id: str,
        *,
        timeout_s: float | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> Iterator[Job]:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        last = self.get(job_id)
        yield last
        while not last.state.terminal:
            if stop is not None and stop():
                return
            with self._changed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return
                wait = WATCH_SLICE_S if remaining is None else min(WATCH_SLICE_S, remaining)
                self._changed.wait_for(partial(self._changed_since, last), timeout=wait)
            current = self.get(job_id)
            if current != last:
                last = current
                yield last

    def _changed_since(self, job: Job) -> bool:
        return self.get(job.job_id) != job

    def register_dataset(self, entry: DatasetEntry) -> None:
        with self._changed:
            self._datasets[entry.dataset_id] = entry
            self._saved_dataset(entry.dataset_id, entry)

    def get_dataset(self, dataset_id: str) -> DatasetEntry:
        try:
            return self._datasets[dataset_id]
        except KeyError:
            msg = f"no dataset with id {dataset_id!r} is in the atlas"
            raise DatasetNotFoundError(msg) from None

    def list_datasets(self) -> list[DatasetEntry]:
        return sorted(self._datasets.values(), key=lambda d: d.dataset_id)

    def remove_dataset(self, dataset_id: str) -> None:
        with self._changed:
            self.get_dataset(dataset_id)
            del self._datasets[dataset_id]
            self._saved_dataset(dataset_id, None)


class SqliteJobStore(MemoryJobStore):
    """:class:`MemoryJobStore` kept in a sqlite file: the embedded mode without Redis.

    Every change is written (one small transaction) before the call returns, so a restart,
    clean or after ``kill -9``, finds its jobs, claims and the dataset registry again; the
    cells of a registered dataset can then still be deleted. Leases stay in memory: after a
    restart no job has one, so an unfinished job is orphaned and resumed.

    ``store_id``: the store these records describe (``settings.embedded_store_id``). The file
    lives beside the store's folder, so it outlives a store deleted on its own; records of
    another store are dropped when the file is opened for a new one, or its first ingestion
    would be refused with ALREADY_EXISTS. A file without an id adopts the first one given.
    """

    def __init__(self, path: Path, *, store_id: str | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        for table in ("jobs", "datasets", "claims", "meta"):
            self._db.execute(f"CREATE TABLE IF NOT EXISTS {table} (id TEXT PRIMARY KEY, v TEXT)")
        if store_id is not None:
            self._belong_to(store_id)
        for (raw,) in self._db.execute("SELECT v FROM jobs"):
            job = Job.from_json(raw)
            self._jobs[job.job_id] = job
        for (raw,) in self._db.execute("SELECT v FROM datasets"):
            entry = DatasetEntry.from_json(raw)
            self._datasets[entry.dataset_id] = entry
        for key, value in self._db.execute("SELECT id, v FROM claims"):
            self._claims[key] = value

    def _belong_to(self, store_id: str) -> None:
        row = self._db.execute("SELECT v FROM meta WHERE id = 'store_id'").fetchone()
        with self._transaction():
            if row is not None and row[0] != store_id:
                log.warning(
                    "%s holds the jobs and datasets of a store that is gone (%s); starting "
                    "an empty registry for store %s",
                    self.path,
                    row[0],
                    store_id,
                )
                for table in ("jobs", "datasets", "claims"):
                    self._db.execute(f"DELETE FROM {table}")
            self._put("meta", "store_id", store_id)

    @classmethod
    def for_settings(cls, settings: Settings) -> SqliteJobStore:
        """The records of the embedded store ``settings`` name, in ``jobs_db_path``."""
        from cellsearch.platform.settings import embedded_store_id

        return cls(settings.jobs_db_path, store_id=embedded_store_id(settings.store_path))

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _put(self, table: str, key: str, value: str | None) -> None:
        if value is None:
            self._db.execute(f"DELETE FROM {table} WHERE id = ?", (key,))
        else:
            self._db.execute(
                f"INSERT OR REPLACE INTO {table} (id, v) VALUES (?, ?)",
                (key, value),
            )

    def _saved_job(self, job: Job) -> None:
        self._put("jobs", job.job_id, job.to_json())

    def _saved_dataset(self, dataset_id: str, entry: DatasetEntry | None) -> None:
        self._put("datasets", dataset_id, None if entry is None else entry.to_json())

    def _saved_claim(self, dataset_id: str, job_id: str | None) -> None:
        self._put("claims", dataset_id, job_id)

    def close(self) -> None:
        self._db.close()


def _text(reply: object) -> str:
    """A Redis reply as text (the client does not decode responses: replies are bytes)."""
    if isinstance(reply, bytes):
        return reply.decode()
    if isinstance(reply, str):
        return reply
    msg = f"expected a string reply from Redis, got {reply!r}"
    raise TypeError(msg)


def _watch(pipe: Pipeline, *keys: str) -> None:
    """``pipe.watch(*keys)``, which redis-py leaves unannotated."""
    pipe.watch(*keys)  # type: ignore[no-untyped-call]


class RedisJobStore:
    """Job records in Redis, shared by every service replica and worker."""

    def __init__(self, redis_url: str, *, prefix: str = "cellsearch") -> None:
        import redis

        self._redis = redis.Redis.from_url(redis_url)
        self._prefix = prefix

    @classmethod
    def for_settings(cls, settings: Settings) -> RedisJobStore:
        """The records of the platform ``settings`` describe (its Redis, its namespace)."""
        return cls(settings.redis_url, prefix=settings.jobs_namespace)

    def _job_key(self, job_id: str) -> str:
        return f"{self._prefix}:job:{job_id}"

    def _channel(self, job_id: str) -> str:
        return f"{self._prefix}:job:{job_id}:events"

    def _dataset_key(self, dataset_id: str) -> str:
        return f"{self._prefix}:dataset:{dataset_id}"

    def _claim_key(self, dataset_id: str) -> str:
        return f"{self._prefix}:claim:{dataset_id}"

    def _lease_key(self, job_id: str) -> str:
        return f"{self._prefix}:lease:{job_id}"

    def create(
        self,
        *,
        path: str,
        study_id: str,
        dataset_id: str,
        metadata: Mapping[str, str],
        claim: bool = False,
    ) -> Job:
        import redis

        job = new_job(path=path, study_id=study_id, dataset_id=dataset_id, metadata=metadata)
        claim_key, dataset_key = self._claim_key(dataset_id), self._dataset_key(dataset_id)
        with self._redis.pipeline() as pipe:
            while True:
                try:
                    if claim:
                        # one transaction: the registry and the claim cannot change between
                        # the check and the write (two submissions race: one wins)
                        _watch(pipe, claim_key, dataset_key)
                        if pipe.exists(dataset_key):
                            msg = (
                                f"dataset {dataset_id!r} is already in the atlas; choose "
                                "another dataset id or delete it first"
                            )
                            raise DatasetTakenError(msg)
                        holder = pipe.get(claim_key)
                        if holder is not None:
                            raw = pipe.get(self._job_key(_text(holder)))
                            held = None if raw is None else Job.from_json(raw)
                            if not _claim_is_stale(held):
                                msg = (
                                    f"dataset {dataset_id!r} is being ingested by job "
                                    f"{_text(holder)}; wait for it to end (WatchJob) or "
                                    "cancel it, or choose another dataset id"
                                )
                                raise DatasetTakenError(msg)
                    pipe.multi()
                    if claim:
                        pipe.set(claim_key, job.job_id)
                    pipe.set(self._job_key(job.job_id), job.to_json())
                    pipe.zadd(f"{self._prefix}:jobs", {job.job_id: job.created_at})
                    pipe.execute()
                    return job
                except redis.WatchError:
                    continue

    def release_claim(self, dataset_id: str, job_id: str) -> None:
        import redis

        key = self._claim_key(dataset_id)
        with self._redis.pipeline() as pipe:
            try:
                _watch(pipe, key)
                held = pipe.get(key)
                if held is None or _text(held) != job_id:
                    return
                pipe.multi()
                pipe.delete(key)
                pipe.execute()
            except redis.WatchError:
                return  # someone else changed the claim: it is not ours any more

    def claim_holder(self, dataset_id: str) -> str | None:
        raw = self._redis.get(self._claim_key(dataset_id))
        return None if raw is None else _text(raw)

    def acquire_lease(self, job_id: str, owner: str, *, ttl_s: float = LEASE_S) -> bool:
        key, ms = self._lease_key(job_id), max(1, int(ttl_s * 1000))
        if self._redis.set(key, owner, nx=True, px=ms):
            return True
        # renew only our own lease (compare and extend in one script)
        script = (
            "if redis.call('get', KEYS[1]) == ARGV[1] then "
            "return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
        )
        return bool(self._redis.eval(script, 1, key, owner, ms))

    def release_lease(self, job_id: str, owner: str) -> None:
        script = (
            "if redis.call('get', KEYS[1]) == ARGV[1] then "
            "return redis.call('del', KEYS[1]) else return 0 end"
        )
        self._redis.eval(script, 1, self._lease_key(job_id), owner)

    def orphaned_jobs(self, *, min_age_s: float = LEASE_S, scan: int = 1000) -> list[Job]:
        wall = time.time()
        out = []
        for job in self.list_jobs(limit=scan):
            if job.state not in _STARTED or wall - job.updated_at < min_age_s:
                continue
            if not self._redis.exists(self._lease_key(job.job_id)):
                out.append(job)
        return out

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
                    _watch(pipe, key)
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
        raws = self._redis.mget([self._job_key(_text(i)) for i in ids]) if ids else []
        return [Job.from_json(raw) for raw in raws if raw is not None]

    def watch(
        self,
        job_id: str,
        *,
        timeout_s: float | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> Iterator[Job]:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        pubsub.subscribe(self._channel(job_id))
        try:
            last = self.get(job_id)  # read after subscribing: no update can fall between
            yield last
            while not last.state.terminal:
                if stop is not None and stop():
                    return
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return
                wait = WATCH_SLICE_S if remaining is None else min(WATCH_SLICE_S, remaining)
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
        ids = sorted(_text(i) for i in self._redis.smembers(f"{self._prefix}:datasets"))
        raws = self._redis.mget([self._dataset_key(i) for i in ids]) if ids else []
        return [DatasetEntry.from_json(raw) for raw in raws if raw is not None]

    def remove_dataset(self, dataset_id: str) -> None:
        self.get_dataset(dataset_id)
        pipe = self._redis.pipeline()
        pipe.delete(self._dataset_key(dataset_id))
        pipe.srem(f"{self._prefix}:datasets", dataset_id)
        pipe.execute()
