"""End to end through real Redis, a real Celery worker process and the real embedded store.

The worker is ``python -m workers`` with CELLSEARCH_* variables pointing at a temp store,
the test Redis database and a temp allowed root; it runs the real validation, a real
(small, untrained) ``CellEncoder`` checkpoint and the real ontology. The embedded store is
owned by the worker process, so the assertions on points open it (the way the search
service does) after the worker has stopped.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
from testkit import save_tiny_model

from cellsearch.ingest.submit import submit_ingestion
from cellsearch.platform.jobs import JobState, RedisJobStore
from cellsearch.platform.settings import Settings
from cellsearch.platform.submit import enqueue_with
from vectorstore import SearchFilter, open_store
from workers.app import make_celery

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CHUNK = 250


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Model checkpoint and input files, built once for the module."""
    from celldata.simulate import make_atlas

    base = tmp_path_factory.mktemp("ingest")
    inbox = base / "inbox"
    out = {"base": base, "inbox": inbox, "model": save_tiny_model(base / "model")}
    out["a"] = make_atlas(inbox / "a.h5ad", n_cells=1500, n_studies=2, seed=1).path
    out["b"] = make_atlas(inbox / "b.h5ad", n_cells=1000, n_studies=1, seed=2).path
    out["big"] = make_atlas(inbox / "big.h5ad", n_cells=4000, n_studies=2, seed=3).path
    adata = ad.read_h5ad(out["b"])
    logged = adata.copy()
    x = sp.csr_matrix(logged.X, dtype=np.float32)
    totals = np.asarray(x.sum(axis=1)).ravel()
    x = sp.diags(1e4 / totals) @ x
    x.data = np.log1p(x.data)
    logged.X = sp.csr_matrix(x, dtype=np.float32)
    out["log"] = inbox / "log.h5ad"
    logged.write_h5ad(out["log"])
    foreign = adata.copy()
    foreign.var_names = [f"Gm{i}" for i in range(foreign.n_vars)]  # no model gene at all
    out["foreign"] = inbox / "foreign.h5ad"
    foreign.write_h5ad(out["foreign"])
    outside = base / "outside"
    outside.mkdir()
    out["outside"] = outside / "b.h5ad"
    out["outside"].write_bytes(out["b"].read_bytes())
    return out


@pytest.fixture
def env(files, redis_url, tmp_path) -> dict[str, str]:
    store = tmp_path / "store"
    return {
        **os.environ,
        "CELLSEARCH_STORE_PATH": str(store),
        "CELLSEARCH_REDIS_URL": redis_url,
        "CELLSEARCH_ALLOWED_ROOTS": json.dumps([str(files["inbox"])]),
        "CELLSEARCH_MODEL_DIR": str(files["model"]),
        "CELLSEARCH_INGEST_CHUNK_CELLS": str(CHUNK),
        "CELLSEARCH_EMBED_BATCH_SIZE": "256",
        "CELLSEARCH_DEVICE": "cpu",
    }


class WorkerProcess:
    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.log = Path(env["CELLSEARCH_STORE_PATH"]).with_suffix(f".{time.time_ns()}.log")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "workers", "--loglevel", "WARNING", *args],
            cwd=ROOT,
            env=env,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # warm shutdown: finish, flush the store
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


@pytest.fixture
def worker_factory(env) -> Iterator:
    started: list[WorkerProcess] = []

    def start(*args: str) -> WorkerProcess:
        worker = WorkerProcess(env, *args)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def submit(env):
    settings = Settings(
        redis_url=env["CELLSEARCH_REDIS_URL"], store_path=Path(env["CELLSEARCH_STORE_PATH"])
    )
    jobs = RedisJobStore.for_settings(settings)
    enqueue = enqueue_with(make_celery(settings), settings.jobs_namespace)

    def go(path: Path | str, dataset_id: str):
        return submit_ingestion(
            jobs, enqueue, path=str(path), study_id="S", dataset_id=dataset_id, metadata={}
        )

    go.jobs = jobs
    return go


def wait_terminal(jobs, job_ids, worker, timeout_s: float = 240.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        current = {j: jobs.get(j) for j in job_ids}
        if all(job.state.terminal for job in current.values()):
            return current
        if worker is not None and worker.proc.poll() is not None:
            pytest.fail(f"worker exited early:\n{worker.output()[-3000:]}")
        time.sleep(0.2)
    tail = worker.output()[-3000:] if worker else ""
    pytest.fail(f"jobs not finished in {timeout_s} s: {current}\n{tail}")


def counts_by_dataset(store_path: Path, dataset_ids) -> tuple[dict[str, int], int]:
    store = open_store(path=store_path)
    try:
        per = {d: store.count(SearchFilter(must={"dataset_id": [d]})) for d in dataset_ids}
        return per, store.count()
    finally:
        store.close()


def test_submitted_files_end_with_exact_counts_and_bad_ones_write_nothing(
    files, env, submit, worker_factory
) -> None:
    worker = worker_factory("--concurrency", "2", "--visibility-timeout", "60")
    a = submit(files["a"], "A")
    b = submit(files["b"], "B")  # two jobs at once on a worker of concurrency 2
    bad = {
        "LOG": submit(files["log"], "LOG"),
        "FOREIGN": submit(files["foreign"], "FOREIGN"),
        "OUTSIDE": submit(files["outside"], "OUTSIDE"),
        "DOTDOT": submit(f"{files['inbox']}/../outside/b.h5ad", "DOTDOT"),
    }
    progress: list[tuple[str, int]] = []

    def watch() -> None:
        for job in submit.jobs.watch(a.job_id, timeout_s=240):
            progress.append((str(job.state), job.cells_done))

    watcher = threading.Thread(target=watch)
    watcher.start()
    ids = [a.job_id, b.job_id, *(j.job_id for j in bad.values())]
    done = wait_terminal(submit.jobs, ids, worker)
    watcher.join(30)

    for ok, n in ((a, 1500), (b, 1000)):
        job = done[ok.job_id]
        assert job.state is JobState.SUCCEEDED, (job.error, worker.output()[-2000:])
        assert (job.cells_done, job.cells_total) == (n, n)
        assert set(job.stage_seconds) >= {"validate", "read", "embed", "upsert"}
    cells = [c for _, c in progress]
    assert cells == sorted(cells), progress
    assert len({c for c in cells if 0 < c < 1500}) >= 2, progress  # seen mid-way, not only at end
    assert progress[-1] == ("SUCCEEDED", 1500)

    expected = {
        "LOG": ("non_integer_counts", "raw"),
        "FOREIGN": ("", "gene"),
        "OUTSIDE": ("path_not_allowed", "outside the allowed roots"),
        "DOTDOT": ("path_not_allowed", "'..'"),
    }
    for name, job in bad.items():
        got = done[job.job_id]
        code, words = expected[name]
        assert got.state is JobState.FAILED, (name, got)
        assert words in got.error, (name, got.error)
        if code:
            assert got.error_code == code, (name, got.error_code)
    assert done[bad["FOREIGN"].job_id].error_code in {
        "insufficient_gene_overlap",
        "wrong_species",
    }
    entry = submit.jobs.get_dataset("A")
    assert entry.n_cells == 1500 and entry.genes_matched == 2000

    worker.stop()
    per, total = counts_by_dataset(Path(env["CELLSEARCH_STORE_PATH"]), [*bad, "A", "B"])
    assert per == {"LOG": 0, "FOREIGN": 0, "OUTSIDE": 0, "DOTDOT": 0, "A": 1500, "B": 1000}
    assert total == 2500


def test_a_worker_killed_mid_job_is_replaced_and_the_job_completes_without_duplicates(
    files, env, submit, worker_factory
) -> None:
    first = worker_factory("--visibility-timeout", "3")
    job = submit(files["big"], "BIG")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        current = submit.jobs.get(job.job_id)
        if current.cells_done >= 2 * CHUNK:
            break
        assert first.proc.poll() is None, first.output()[-3000:]
        time.sleep(0.05)
    first.kill9()
    killed_at = submit.jobs.get(job.job_id)
    assert 0 < killed_at.cells_done < 4000, "the job must be interrupted mid-way"
    assert not killed_at.state.terminal

    second = worker_factory("--visibility-timeout", "3")
    done = wait_terminal(submit.jobs, [job.job_id], second)[job.job_id]
    assert done.state is JobState.SUCCEEDED, (done.error, second.output()[-2000:])
    assert done.cells_done == done.cells_total == 4000
    assert done.attempts >= 2
    second.stop()

    per, total = counts_by_dataset(Path(env["CELLSEARCH_STORE_PATH"]), ["BIG"])
    assert per == {"BIG": 4000}
    assert total == 4000
