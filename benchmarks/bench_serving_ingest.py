"""Ingestion with serving unaffected: the embedded platform ingests while it answers searches.

Starts ``cellsearch serve --worker redis`` (embedded store, gRPC server and a Celery worker
thread in one process: the mode in which an index build used to stop every RPC), seeds a
small dataset, then ingests a simulated atlas of ``--cells`` cells while ``--search-threads``
clients search without pause and one client checks health every 50 ms. Prints, and writes
to ``benchmarks/results/perf/bench_serving_ingest.json``:

* end-to-end ingestion cells/s (submit -> SUCCEEDED, validation, embedding, upserts and the
  HNSW build included) beside the 1,807 cells/s of issue 19 and the goal of 5,000;
* search p50/p99 and health p50/max during the ingestion and during its index build apart;
* the serving process's RSS (VmRSS) at the start and its peak (VmHWM).

    python benchmarks/bench_serving_ingest.py --cells 100000 --search-threads 8
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BASELINE_CELLS_PER_S = 1807.0  # issue 19: 100k cells end to end, build included (main)
GOAL_CELLS_PER_S = 5000.0


def rss_mb(pid: int, key: str = "VmRSS:") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def wait_for(log: Path, pattern: str, proc: subprocess.Popen, timeout_s: float = 600) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = re.search(pattern, log.read_text() if log.exists() else "")
        if found:
            return found.group(1)
        if proc.poll() is not None:
            raise SystemExit(f"the server exited:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    raise SystemExit(f"no {pattern!r} within {timeout_s} s")


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=100_000)
    parser.add_argument("--seed-cells", type=int, default=10_000)
    parser.add_argument("--studies", type=int, default=8)
    parser.add_argument("--search-threads", type=int, default=8)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/perf")
    args = parser.parse_args()

    import grpc
    import redis
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from celldata.simulate import make_atlas
    from cellsearch.client import CellSearchClient

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-serving-"))
    inbox = work / "inbox"
    started = time.perf_counter()
    make_atlas(inbox / "seed.h5ad", n_cells=args.seed_cells, n_studies=2, seed=1)
    make_atlas(inbox / "atlas.h5ad", n_cells=args.cells, n_studies=args.studies, seed=2)
    print(f"files written in {time.perf_counter() - started:.0f} s under {work}", flush=True)
    redis.Redis.from_url(args.redis).flushdb()
    env = {
        **os.environ,
        "CELLSEARCH_STORE_PATH": str(work / "store"),
        "CELLSEARCH_REDIS_URL": args.redis,
        "CELLSEARCH_ALLOWED_ROOTS": json.dumps([str(inbox)]),
        "CELLSEARCH_GRPC_ADDRESS": "127.0.0.1:0",
        "CELLSEARCH_DEVICE": "cpu",
        "CELLSEARCH_LOG_LEVEL": "WARNING",
    }
    log = work / "serve.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cellsearch.app.cli", "serve", "--worker", "redis"],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        address = wait_for(log, r"serving on (\S+) ", proc)
        client = CellSearchClient(address, timeout=120)
        job = client.submit_ingestion(str(inbox / "seed.h5ad"), "seed", dataset_id="seed")
        while client.get_job(job.job_id).state not in ("SUCCEEDED", "FAILED"):
            time.sleep(0.5)
        print(f"seeded {args.seed_cells} cells; RSS {rss_mb(proc.pid):.0f} MB", flush=True)
        rss_start = rss_mb(proc.pid)

        phase = {"name": "ingest"}
        search_ms: dict[str, list[float]] = {"ingest": [], "index": []}
        health_ms: dict[str, list[float]] = {"ingest": [], "index": []}
        errors: list[str] = []
        stop = threading.Event()

        def searcher(i: int) -> None:
            rng = np.random.default_rng(i)
            filters = [None, {"studies": ["seed"]}, {"exclude_studies": ["nope"]}]
            with CellSearchClient(address, timeout=30) as c:
                n = 0
                while not stop.is_set():
                    v = rng.normal(size=(1, 128)).astype(np.float32)
                    t = time.perf_counter()
                    try:
                        c.search(v / np.linalg.norm(v), k=10, filter=filters[n % 3])
                    except Exception as exc:
                        errors.append(repr(exc)[:200])
                    search_ms[phase["name"]].append((time.perf_counter() - t) * 1000)
                    n += 1

        def health() -> None:
            stub = health_pb2_grpc.HealthStub(grpc.insecure_channel(address))
            while not stop.is_set():
                t = time.perf_counter()
                try:
                    stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
                except Exception as exc:
                    errors.append(repr(exc)[:200])
                health_ms[phase["name"]].append((time.perf_counter() - t) * 1000)
                time.sleep(0.05)

        threads = [threading.Thread(target=searcher, args=(i,)) for i in range(args.search_threads)]
        threads.append(threading.Thread(target=health))
        for t in threads:
            t.start()
        submitted = time.perf_counter()
        job = client.submit_ingestion(str(inbox / "atlas.h5ad"), "atlas", dataset_id="atlas")
        index_started = None
        while True:
            current = client.get_job(job.job_id)
            if current.state == "UPSERTING" and index_started is None:
                index_started = time.perf_counter()
                phase["name"] = "index"
            if current.state in ("SUCCEEDED", "FAILED", "CANCELLED"):
                break
            time.sleep(0.1)
        ended = time.perf_counter()
        stop.set()
        for t in threads:
            t.join(60)
        if current.state != "SUCCEEDED":
            raise SystemExit(f"the job ended {current.state}: {current.error}")
        seconds = ended - submitted
        result = {
            "cells": args.cells,
            "search_threads": args.search_threads,
            "seconds": round(seconds, 1),
            "cells_per_s": round(args.cells / seconds, 1),
            "baseline_cells_per_s": BASELINE_CELLS_PER_S,
            "goal_cells_per_s": GOAL_CELLS_PER_S,
            "stage_seconds": current.stage_seconds,
            "index_build_s": round(ended - index_started, 1) if index_started else None,
            "errors": len(errors),
            "error_examples": errors[:3],
            "rss_start_mb": round(rss_start, 0),
            "rss_peak_mb": round(rss_mb(proc.pid, "VmHWM:"), 0),
            "rss_end_mb": round(rss_mb(proc.pid), 0),
        }
        for name in ("ingest", "index"):
            result[f"search_{name}"] = {
                "n": len(search_ms[name]),
                "p50_ms": round(pct(search_ms[name], 50), 1),
                "p99_ms": round(pct(search_ms[name], 99), 1),
            }
            result[f"health_{name}"] = {
                "n": len(health_ms[name]),
                "p50_ms": round(pct(health_ms[name], 50), 1),
                "max_ms": round(max(health_ms[name], default=float("nan")), 1),
            }
        client.close()
        print(json.dumps(result, indent=2))
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench_serving_ingest.json").write_text(json.dumps(result, indent=2) + "\n")
    finally:
        proc.terminate()
        proc.wait(60)


if __name__ == "__main__":
    main()
