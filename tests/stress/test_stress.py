"""Load, faults and hostile clients against the real platform: ``pytest -m stress``.

``cellsearch serve`` runs as a process (embedded store, gRPC server, a Celery worker
thread fed through Redis) with a small real encoder checkpoint; a second scenario runs a
``python -m workers`` process that owns its own store. Redis database 10 is this suite's
own (flushed before and after), so parallel runs of other suites never see its queue.

What must hold (issue 19):

* 8 search threads during an ingestion and a dataset deletion: 0 errors, health answered
  within 1 s throughout;
* 100 idle watchers: Ping still under 100 ms;
* reserved and 40 MB metadata, a 30 x 10,000 search, a taken dataset id, a symlink out of
  the roots and a folder flipping to a symlink during the job: refused, nothing foreign
  stored;
* ``kill -9`` of the embedded server and of a worker process mid-job: the job ends
  SUCCEEDED with exactly the file's cells within a minute of the restart;
* a second server on the same store exits with a clear message.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from testkit import flushed_redis, save_tiny_model

from cellsearch.client import CellSearchClient, CellSearchError
from cellsearch.platform.jobs import JobState, RedisJobStore
from cellsearch.platform.settings import Settings
from cellsearch.v1 import cellsearch_pb2 as pb
from cellsearch.v1 import cellsearch_pb2_grpc as pb_grpc

pytestmark = [pytest.mark.stress, pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = "redis://127.0.0.1:6379/10"
SIZES = {"seed": 2000, "doomed": 2000, "big": 8000, "crash": 8000, "worker": 6000, "swap": 1500}
CHUNK = 500
LEASE_S = 3.0


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    from celldata.simulate import make_atlas

    base = tmp_path_factory.mktemp("stress")
    inbox = base / "inbox"
    out = {"base": base, "inbox": inbox, "model": save_tiny_model(base / "model")}
    for seed, (name, n) in enumerate(SIZES.items()):
        out[name] = make_atlas(
            inbox / name / f"{name}.h5ad", n_cells=n, n_studies=2, seed=seed
        ).path
    outside = base / "outside" / "swap"
    out["outside"] = make_atlas(outside / "swap.h5ad", n_cells=3000, n_studies=1, seed=99).path
    return out


@pytest.fixture(scope="module")
def redis_db() -> Iterator[str]:
    with flushed_redis(REDIS_URL) as url:
        yield url


def _env(files: dict[str, Path], store: Path) -> dict[str, str]:
    return {
        **os.environ,
        "CELLSEARCH_STORE_PATH": str(store),
        "CELLSEARCH_REDIS_URL": REDIS_URL,
        "CELLSEARCH_ALLOWED_ROOTS": json.dumps([str(files["inbox"])]),
        "CELLSEARCH_MODEL_DIR": str(files["model"]),
        "CELLSEARCH_INGEST_CHUNK_CELLS": str(CHUNK),
        "CELLSEARCH_EMBED_BATCH_SIZE": "500",
        "CELLSEARCH_DEVICE": "cpu",
        "CELLSEARCH_GRPC_ADDRESS": "127.0.0.1:0",
        "CELLSEARCH_JOB_LEASE_S": str(LEASE_S),
        "CELLSEARCH_SHUTDOWN_GRACE_S": "2",
        "CELLSEARCH_DRAIN_S": "0.5",
        "CELLSEARCH_LOG_LEVEL": "WARNING",
        "CELLSEARCH_METRICS_PORT": "0",
    }


class Proc:
    """A platform process with its output in a file; waits for a line of it."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
        )

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def wait_for(self, pattern: str, timeout_s: float = 180.0) -> re.Match:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = re.search(pattern, self.output())
            if found:
                return found
            if self.proc.poll() is not None:
                pytest.fail(f"process exited ({self.proc.returncode}):\n{self.output()[-3000:]}")
            time.sleep(0.2)
        pytest.fail(f"no {pattern!r} in {timeout_s} s:\n{self.output()[-3000:]}")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class Server:
    """``cellsearch serve --worker redis`` over one store; restartable."""

    def __init__(self, files: dict[str, Path], store: Path) -> None:
        self.env = _env(files, store)
        self.store = store
        self.n = 0
        self.proc: Proc | None = None
        self.address = ""

    def start(self) -> Server:
        self.n += 1
        self.proc = Proc(
            [sys.executable, "-m", "cellsearch.app.cli", "serve", "--worker", "redis"],
            self.env,
            self.store.with_suffix(f".serve{self.n}.log"),
        )
        self.address = self.proc.wait_for(r"serving on (\S+) ").group(1)
        return self

    def client(self, timeout: float = 30) -> CellSearchClient:
        return CellSearchClient(self.address, timeout=timeout)


@pytest.fixture(scope="module")
def server(files, redis_db) -> Iterator[Server]:
    srv = Server(files, files["base"] / "store").start()
    yield srv
    if srv.proc is not None:
        srv.proc.stop()


def wait_job(client: CellSearchClient, job_id: str, timeout_s: float = 120.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get_job(job_id)
        if JobState(job.state).terminal:
            return job
        time.sleep(0.2)
    pytest.fail(f"job {job_id} did not end in {timeout_s} s: {client.get_job(job_id)}")


def _vectors(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, 128)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _ingest(client: CellSearchClient, files, name: str):
    return client.submit_ingestion(str(files[name]), "stress", dataset_id=name)


# ------------------------------------------------------------------------------ the suite


def test_searches_and_health_during_ingestion_and_deletion(server, files):
    with server.client() as client:
        for name in ("seed", "doomed"):
            job = wait_job(client, _ingest(client, files, name).job_id)
            assert job.state == "SUCCEEDED", job.error
        errors: list[BaseException] = []
        search_ms: list[float] = []
        health_ms: list[float] = []
        stop = threading.Event()

        def searcher(i: int) -> None:
            rng_filters = [None, {"studies": ["stress"]}, {"exclude_studies": ["none"]}]
            with server.client() as c:
                n = 0
                while not stop.is_set():
                    started = time.perf_counter()
                    try:
                        c.search(_vectors(2, i * 1000 + n), k=10, filter=rng_filters[n % 3])
                    except BaseException as exc:
                        errors.append(exc)
                        return
                    search_ms.append((time.perf_counter() - started) * 1000)
                    n += 1

        def health() -> None:
            stub = health_pb2_grpc.HealthStub(grpc.insecure_channel(server.address))
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
                except BaseException as exc:
                    errors.append(exc)
                    return
                health_ms.append((time.perf_counter() - started) * 1000)
                time.sleep(0.05)

        threads = [threading.Thread(target=searcher, args=(i,)) for i in range(8)]
        threads.append(threading.Thread(target=health))
        for t in threads:
            t.start()
        try:
            big = _ingest(client, files, "big")
            time.sleep(1.0)
            removed = client.delete_dataset("doomed")
            done = wait_job(client, big.job_id)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        assert done.state == "SUCCEEDED", done.error
        assert done.cells_done == SIZES["big"]
        assert errors == []
        assert removed == SIZES["doomed"]
        p50, p99 = np.percentile(search_ms, [50, 99])
        print(
            f"\nduring ingestion + deletion: {len(search_ms)} searches, p50 {p50:.1f} ms, "
            f"p99 {p99:.1f} ms; health max {max(health_ms):.1f} ms over {len(health_ms)} checks"
        )
        assert max(health_ms) < 1000


def test_idle_watchers_leave_ping_fast(server):
    # a job nobody runs, in the server's own records: its watchers stay idle
    jobs = RedisJobStore.for_settings(Settings(redis_url=REDIS_URL, store_path=server.store))
    job = jobs.create(path="/nowhere", study_id="s", dataset_id="never", metadata={})
    channel = grpc.insecure_channel(server.address)
    stub = pb_grpc.IngestionStub(channel)
    calls = [stub.WatchJob(pb.JobRequest(job_id=job.job_id)) for _ in range(100)]
    refused = 0
    try:
        with server.client() as client:
            client.ping()
            time.sleep(1.0)  # every watcher is open or refused by now
            pings = []
            for _ in range(10):
                started = time.perf_counter()
                client.ping()
                pings.append((time.perf_counter() - started) * 1000)
        assert max(pings) < 100, pings
    finally:
        for call in calls:
            if call.done() and call.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                refused += 1
            call.cancel()
        channel.close()
        jobs.update(job.job_id, state=JobState.CANCELLED)
    assert refused >= 100 - 8  # the default cap keeps the rest of the threads free


def test_hostile_requests_are_refused(server, files):
    path = str(files["seed"])
    with server.client(timeout=60) as client:
        for metadata, code in (
            ({"reembed_of_model": "x"}, grpc.StatusCode.INVALID_ARGUMENT),
            ({"note": "x" * 40_000_000}, grpc.StatusCode.RESOURCE_EXHAUSTED),
        ):
            with pytest.raises(CellSearchError) as err:
                client.submit_ingestion(path, "stress", dataset_id="seed", metadata=metadata)
            assert err.value.code == code
        with pytest.raises(CellSearchError) as err:
            client.submit_ingestion(path, "stress", dataset_id="seed")  # registered
        assert err.value.code == grpc.StatusCode.ALREADY_EXISTS
        started = time.perf_counter()
        with pytest.raises(CellSearchError) as err:
            client.search(_vectors(30, 5), k=10_000)
        assert err.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert time.perf_counter() - started < 2.0
        link = files["inbox"] / "escape"
        link.symlink_to(files["outside"].parent, target_is_directory=True)
        with pytest.raises(CellSearchError) as err:
            client.submit_ingestion(str(link / "swap.h5ad"), "stress", dataset_id="escape")
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert len(client.list_datasets()) == 2  # seed and big: nothing else was stored


def test_a_folder_flipping_to_a_symlink_never_ingests_outside_cells(server, files):
    folder = files["swap"].parent
    real = folder.with_name("swap.real")
    folder.rename(real)
    folder.symlink_to(real, target_is_directory=True)  # starts inside the roots
    outside = files["outside"].parent
    stop = threading.Event()

    def flip() -> None:
        tmp = folder.with_name("swap.tmp")
        n = 0
        while not stop.is_set():
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(outside if n % 2 == 0 else real, target_is_directory=True)
            tmp.replace(folder)  # atomic: the path always exists, its target flips
            n += 1
            time.sleep(0.002)

    flipper = threading.Thread(target=flip)
    with server.client() as client:
        flipper.start()
        try:
            outcomes = []
            for i in range(3):
                try:
                    job = client.submit_ingestion(
                        str(folder / "swap.h5ad"), "stress", dataset_id=f"swap{i}"
                    )
                except CellSearchError as exc:  # refused at submit while it pointed out
                    assert exc.code == grpc.StatusCode.INVALID_ARGUMENT
                    outcomes.append("refused")
                    continue
                done = wait_job(client, job.job_id)
                if done.state == "SUCCEEDED":
                    assert done.cells_done == SIZES["swap"]  # the inside file, never 3,000
                    outcomes.append("inside")
                    client.delete_dataset(f"swap{i}")
                else:
                    assert done.error_code == "path_not_allowed", done.error
                    outcomes.append("failed")
        finally:
            stop.set()
            flipper.join(10)
    print(f"\nsymlink flips: {outcomes}")


def test_kill9_of_the_embedded_server_mid_job_recovers_with_exact_cells(server, files):
    with server.client() as client:
        job = _ingest(client, files, "crash")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            current = client.get_job(job.job_id)
            if 0 < current.cells_done < SIZES["crash"]:
                break
            time.sleep(0.05)
        assert 0 < current.cells_done < SIZES["crash"], current
    server.proc.kill9()
    restarted = time.monotonic()
    server.start()
    with server.client() as client:
        done = wait_job(client, job.job_id, timeout_s=60)
        took = time.monotonic() - restarted
        print(f"\nserver kill -9 at {current.cells_done} cells: done {took:.1f} s after restart")
        assert done.state == "SUCCEEDED", done.error
        assert done.cells_done == SIZES["crash"]


def test_a_second_server_on_the_same_store_says_who_owns_it(server, files):
    proc = Proc(
        [sys.executable, "-m", "cellsearch.app.cli", "serve", "--worker", "none"],
        server.env,
        server.store.with_suffix(".second.log"),
    )
    assert proc.proc.wait(120) == 3
    out = proc.output()
    assert "is open in another process" in out
    assert "Traceback" not in out


def test_the_store_holds_exactly_the_files_cells(server, files):
    from vectorstore import SearchFilter, open_store

    assert server.proc.stop() == 0
    store = open_store(path=server.store)
    try:
        for name, expected in (("seed", 2000), ("big", 8000), ("crash", 8000), ("doomed", 0)):
            assert store.count(SearchFilter(must={"dataset_id": [name]})) == expected, name
        assert store.count() == 18000
    finally:
        store.close()
    server.proc = None


def test_kill9_of_a_worker_process_mid_job_recovers_with_exact_cells(files, redis_db, tmp_path):
    from cellsearch.ingest.submit import submit_ingestion
    from cellsearch.platform.submit import enqueue_with
    from vectorstore import SearchFilter, open_store
    from workers.app import make_celery

    store = tmp_path / "worker-store"
    env = _env(files, store)

    def worker(n: int) -> Proc:
        proc = Proc(
            [sys.executable, "-m", "workers", "--loglevel", "WARNING"],
            env,
            tmp_path / f"worker{n}.log",
        )
        proc.wait_for("Prometheus metrics on port")
        return proc

    first = worker(1)
    settings = Settings(redis_url=REDIS_URL, store_path=store, job_lease_s=LEASE_S)
    jobs = RedisJobStore.for_settings(settings)
    enqueue = enqueue_with(make_celery(settings), settings.jobs_namespace)
    job = submit_ingestion(
        jobs,
        enqueue,
        path=str(files["worker"]),
        study_id="stress",
        dataset_id="worker",
        metadata={},
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        current = jobs.get(job.job_id)
        if 0 < current.cells_done < SIZES["worker"]:
            break
        time.sleep(0.05)
    assert 0 < current.cells_done < SIZES["worker"], current
    first.kill9()
    second = worker(2)
    restarted = time.monotonic()
    try:
        while time.monotonic() - restarted < 60:
            done = jobs.get(job.job_id)
            if done.state.terminal:
                break
            time.sleep(0.2)
        took = time.monotonic() - restarted
        print(f"\nworker kill -9 at {current.cells_done} cells: done {took:.1f} s after restart")
        assert done.state is JobState.SUCCEEDED, (done, second.output()[-2000:])
    finally:
        assert second.stop() == 0
    opened = open_store(path=store)
    try:
        assert opened.count(SearchFilter(must={"dataset_id": ["worker"]})) == SIZES["worker"]
    finally:
        opened.close()
