"""Crash recovery in seconds: job leases, and a reaper that hands orphaned jobs out again.

A worker running a job holds its *lease* (``JobStore.acquire_lease``) and renews it from a
heartbeat thread every third of ``lease_s``. A worker killed with ``kill -9`` stops renewing;
once the lease lapses, the :class:`Reaper` of any live worker (the embedded server's included)
finds the job started but unleased and enqueues it again. The pipeline resumes it at its
recorded ``cells_done`` and point ids are deterministic, so the job ends with exactly the
file's cells. Without leases the job waited for the broker's visibility timeout (1 h).

A copy of a job that arrives while another worker holds the lease is dropped (the lease is
taken before any work), so a redelivered message and a reaped copy never run at once.

Tests: tests/workers/test_recovery.py; kill -9 scenarios in tests/stress/test_stress.py.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from cellsearch.platform.jobs import Job, JobState, JobStore

log = logging.getLogger(__name__)


class LeaseHeldError(RuntimeError):
    """Another live worker runs this job; this copy of it is dropped."""


def lease_owner() -> str:
    """A unique owner name for one run of a job (host, process, run)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@contextmanager
def leased(jobs: JobStore, job_id: str, *, lease_s: float) -> Iterator[str]:
    """Hold ``job_id``'s lease while the block runs (renewed by a heartbeat thread).

    Raises :class:`LeaseHeldError` at once when another live worker holds it.
    """
    owner = lease_owner()
    if not jobs.acquire_lease(job_id, owner, ttl_s=lease_s):
        msg = f"job {job_id} is running on another worker (its lease is held)"
        raise LeaseHeldError(msg)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(lease_s / 3):
            try:
                if not jobs.acquire_lease(job_id, owner, ttl_s=lease_s):
                    log.warning("job %s: lease taken over by another worker", job_id)
            except Exception:  # Redis blip: retry at the next beat, the lease still runs
                log.warning("job %s: lease renewal failed", job_id, exc_info=True)

    thread = threading.Thread(target=beat, name=f"lease-{job_id[:8]}", daemon=True)
    thread.start()
    try:
        yield owner
    finally:
        stop.set()
        thread.join(5)
        try:
            jobs.release_lease(job_id, owner)
        except Exception:  # it lapses on its own
            log.warning("job %s: could not release the lease", job_id, exc_info=True)


class Reaper:
    """Re-enqueue started jobs whose worker died (no live lease), every ``interval_s``."""

    def __init__(
        self,
        jobs: JobStore,
        enqueue: Callable[[str], None],
        *,
        lease_s: float,
        interval_s: float | None = None,
    ) -> None:
        self.jobs = jobs
        self.enqueue = enqueue
        self.lease_s = lease_s
        self.interval_s = interval_s if interval_s is not None else max(0.5, lease_s / 3)
        self._sent: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep(self) -> list[str]:
        """One pass: the ids of the orphaned jobs enqueued again."""
        now = time.monotonic()
        sent = []
        for job in self.jobs.orphaned_jobs(min_age_s=self.lease_s):
            if now - self._sent.get(job.job_id, -1e9) < 2 * self.lease_s:
                continue  # sent recently: give a worker time to take it
            log.warning(
                "job %s (%s, %d cells done) lost its worker; enqueueing it again",
                job.job_id,
                job.state,
                job.cells_done,
            )
            self.enqueue(job.job_id)
            self._sent[job.job_id] = now
            sent.append(job.job_id)
        return sent

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sweep()
            except Exception:  # Redis down: try again next time
                log.warning("reaper: sweep failed", exc_info=True)

    def start(self) -> Reaper:
        self._thread = threading.Thread(target=self._loop, name="cellsearch-reaper", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


def unfinished(jobs: JobStore, limit: int = 1000) -> list[Job]:
    """Jobs not in a terminal state (what a restarted in-process runner resumes)."""
    return [j for j in jobs.list_jobs(limit=limit) if not JobState(j.state).terminal]
