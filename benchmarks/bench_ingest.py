"""End-to-end ingestion: a simulated .h5ad through Celery + Redis into the embedded store.

Starts a real worker process (``python -m workers``) owning a fresh embedded store, waits
until it answers a Celery ping (start-up, model load and kernel warm-up are printed apart),
submits the file as a job by task name, and prints end-to-end cells/s (submit -> SUCCEEDED),
the time per stage from the job record (validate, read, normalise, embed, payload, upsert,
index), and the worker's peak RSS (VmHWM). Beside it: the sum of the stage times the same run
measured (the pipeline's own work; the ratio shows what the queue and the progress records
cost) and the first recorded end-to-end figure (215 cells/s at 20k cells, before the
grouped-payload write path). Goal: 5,000 cells/s end to end, and a peak RSS that stays flat
as the file grows (run --cells 200000 and --cells 1000000).

``--optimize`` builds the HNSW index at the end of the job (``CELLSEARCH_INGEST_OPTIMIZE``);
by default the benchmark measures ingestion without it, as a bulk load would run it.

    python benchmarks/bench_ingest.py --cells 200000
    python benchmarks/bench_ingest.py --cells 20000 --optimize --redis redis://127.0.0.1:6379/14

The encoder is the bundled default model when built, else an untrained model of the same
(SCimilarity) shape over the simulated atlas's genes: the cost is the same.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GOAL_CELLS_PER_S = 5000.0
#: The first end-to-end measurement (20k cells, HNSW build included, per-record payloads).
FIRST_CELLS_PER_S = 215.0


def peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def wait_ready(app: object, worker: subprocess.Popen, timeout_s: float = 600.0) -> None:
    """Block until the worker answers a Celery ping (it has opened its resources)."""
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        if worker.poll() is not None:
            raise SystemExit("the worker exited during start-up")
        if app.control.ping(timeout=1.0):  # type: ignore[attr-defined]
            return
    raise SystemExit(f"the worker did not answer a ping within {timeout_s:.0f} s")


def model_dir(work: Path) -> Path | None:
    from encoder.model import DEFAULT_MODEL_DIR

    if (DEFAULT_MODEL_DIR / "manifest.json").is_file():
        return None
    from celldata.simulate import atlas_genes
    from encoder import CellEncoder, EncoderConfig
    from encoder.module import AutoEncoder

    genes = atlas_genes()
    CellEncoder(AutoEncoder(EncoderConfig(n_genes=len(genes))), genes).save(work / "model")
    return work / "model"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=200_000)
    parser.add_argument("--studies", type=int, default=8)
    parser.add_argument("--chunk", type=int, default=8192)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--optimize", action="store_true", help="build HNSW at the end")
    args = parser.parse_args()

    from celldata.simulate import make_atlas
    from cellsearch.ingest.submit import submit_ingestion
    from cellsearch.platform.jobs import RedisJobStore
    from cellsearch.platform.settings import Settings
    from cellsearch.platform.submit import enqueue_with
    from workers.app import make_celery

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    inbox = work / "inbox"
    path = inbox / f"atlas-{args.cells}.h5ad"
    t0 = time.perf_counter()
    if not path.exists():
        make_atlas(path, n_cells=args.cells, n_studies=args.studies, seed=0)
    print(f"file: {path} ({args.cells:,} cells, written in {time.perf_counter() - t0:.1f} s)")
    model = model_dir(work)
    store = work / f"store-{time.time_ns()}"
    env = {
        **os.environ,
        "CELLSEARCH_STORE_PATH": str(store),
        "CELLSEARCH_REDIS_URL": args.redis,
        "CELLSEARCH_ALLOWED_ROOTS": json.dumps([str(inbox)]),
        "CELLSEARCH_INGEST_CHUNK_CELLS": str(args.chunk),
        "CELLSEARCH_DEVICE": "cpu",
        "CELLSEARCH_INGEST_OPTIMIZE": "true" if args.optimize else "false",
    }
    if model is not None:
        env["CELLSEARCH_MODEL_DIR"] = str(model)
    launched = time.perf_counter()
    worker = subprocess.Popen(
        [sys.executable, "-m", "workers", "--loglevel", "WARNING"], cwd=ROOT, env=env
    )
    try:
        settings = Settings(redis_url=args.redis, store_path=store)
        jobs = RedisJobStore.for_settings(settings)
        app = make_celery(settings)
        enqueue = enqueue_with(app, settings.jobs_namespace)
        wait_ready(app, worker)
        print(f"worker ready in {time.perf_counter() - launched:.1f} s (model, kernel warm-up)")
        started = time.perf_counter()
        job = submit_ingestion(
            jobs, enqueue, path=str(path), study_id="bench", dataset_id=f"bench-{time.time_ns()}"
        )
        peak = 0.0
        while True:
            current = jobs.get(job.job_id)
            peak = max(peak, peak_rss_mb(worker.pid))
            if current.state.terminal:
                break
            if worker.poll() is not None:
                raise SystemExit("the worker exited before the job finished")
            time.sleep(0.5)
        wall = time.perf_counter() - started
        peak = max(peak, peak_rss_mb(worker.pid))
    finally:
        worker.terminate()
        worker.wait(120)
    if current.state != "SUCCEEDED":
        raise SystemExit(f"job ended {current.state}: {current.error}")
    stages = current.stage_seconds
    work_s = sum(stages.values())
    n = current.cells_done
    print(f"end to end (submit -> SUCCEEDED, worker already started): {wall:.1f} s")
    print(
        f"  {n / wall:,.0f} cells/s   goal {GOAL_CELLS_PER_S:,.0f}   "
        f"ratio {n / wall / GOAL_CELLS_PER_S:.2f}"
    )
    print(
        f"  first recorded figure {FIRST_CELLS_PER_S:,.0f} cells/s (20k cells, with HNSW): "
        f"x{n / wall / FIRST_CELLS_PER_S:.1f}"
    )
    print(
        f"  sum of pipeline stages {work_s:.1f} s = {n / work_s:,.0f} cells/s; "
        f"end-to-end / baseline time = {wall / work_s:.2f}"
    )
    from cellsearch.ingest.pipeline import STAGES

    for stage in (*STAGES, *(k for k in stages if k not in STAGES)):
        secs = stages.get(stage, 0.0)
        rate = f"{n / secs:,.0f} cells/s" if secs > 0 else "-"
        print(f"  {stage:<10} {secs:8.1f} s   {rate}")
    print(f"peak worker RSS: {peak:,.0f} MB at {n:,} cells (chunk {args.chunk})")


if __name__ == "__main__":
    main()
