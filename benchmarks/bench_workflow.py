"""The public workflow with its defaults, the way a new user runs it, timed and scored.

Writes a simulated multi-study atlas as one reference .h5ad (its studies in a ``study_id``
column) and one query .h5ad (whole held-out studies), then runs the CLI and nothing else:

    cellsearch train ref.h5ad -o model
    CELLSEARCH_MODEL_DIR=model cellsearch serve            # embedded store, Redis worker
    cellsearch ingest ref.h5ad --wait
    cellsearch annotate query.h5ad -o annotated.h5ad
    cellsearch search --file query.h5ad --tissue <the query's tissue> -k 5

It prints each step's seconds and the annotation's exact accuracy, macro-F1 and ontology
score against the query's true leaf types, beside the same annotation with other candidate
counts (``--baseline-k``: 50 and 15; the default is 100), in one run. The store folder is made fresh
each run: a re-made store must ingest again (``Settings.jobs_namespace``).

    python benchmarks/bench_workflow.py                      # seed 11, 12,000 cells, 8 studies
    python benchmarks/bench_workflow.py --cells 40000 --studies 12 --seed 3
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BLOOD = "UBERON:0000178"


def cli(*args: str, env: dict[str, str]) -> tuple[float, str]:
    """Run ``cellsearch ARGS``; (seconds, output). A failing command stops the benchmark."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "cellsearch.app.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(
            f"cellsearch {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
        )
    return seconds, done.stdout + done.stderr


def write_split(folder: Path, n_cells: int, n_studies: int, seed: int) -> tuple[list[str], str]:
    """ref.h5ad and query.h5ad: held-out studies of one tissue (blood when it can), one of
    that tissue's studies always left in the reference, so a search within it finds cells."""
    from celldata.simulate import simulate_atlas

    atlas = simulate_atlas(n_cells, n_studies, seed=seed)
    tissue = atlas.obs.groupby("study_id", observed=True)["tissue_ontology_term_id"].first()
    tissue = tissue.astype(str)
    counts = tissue.value_counts()
    chosen = BLOOD if counts.get(BLOOD, 0) >= 2 else str(counts.index[0])
    if counts[chosen] < 2:
        msg = f"no tissue has two studies among {len(tissue)}: simulate more studies"
        raise SystemExit(msg)
    query = sorted(tissue[tissue == chosen].index)[: min(2, counts[chosen] - 1)]
    is_query = atlas.obs["study_id"].astype(str).isin(query).to_numpy()
    atlas[~is_query].copy().write_h5ad(folder / "ref.h5ad")
    atlas[is_query].copy().write_h5ad(folder / "query.h5ad")
    return query, chosen


def score(annotated: Path, column: str = "cellsearch_cell_type_id") -> dict[str, float]:
    import anndata as ad

    import ontology
    from benchmarks.eval import metrics

    obs = ad.read_h5ad(annotated, backed="r").obs
    truth = obs["true_cell_type_ontology_term_id"].astype(str).to_numpy()
    pred = obs[column].astype(str).to_numpy()
    return {
        "accuracy": metrics.accuracy(truth, pred),
        "macro_f1": metrics.macro_f1(truth, pred),
        "ontology_score": metrics.ontology_score(truth, pred, ontology.ancestors),
        "unknown": float(np.mean(pred == "unknown")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=12_000)
    parser.add_argument("--studies", type=int, default=8)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--baseline-k", type=int, nargs="*", default=[50, 15])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/perf")
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-workflow-"))
    work.mkdir(parents=True, exist_ok=True)
    query_studies, tissue = write_split(work, args.cells, args.studies, args.seed)
    shutil.rmtree(work / "store", ignore_errors=True)
    shutil.rmtree(work / "model", ignore_errors=True)
    env = {**os.environ, "CELLSEARCH_REDIS_URL": args.redis, "CELLSEARCH_DEVICE": "cpu"}
    steps: dict[str, float] = {}

    steps["train"], out = cli("train", str(work / "ref.h5ad"), "-o", str(work / "model"), env=env)
    held_out = re.search(r"held-out studies .*", out)
    print(f"train: {steps['train']:.1f} s; {held_out.group(0) if held_out else ''}", flush=True)

    serve_env = {
        **env,
        "CELLSEARCH_MODEL_DIR": str(work / "model"),
        "CELLSEARCH_STORE_PATH": str(work / "store"),
        "CELLSEARCH_ALLOWED_ROOTS": str(work),
        "CELLSEARCH_GRPC_ADDRESS": "127.0.0.1:0",
        "CELLSEARCH_LOG_LEVEL": "WARNING",
    }
    log = work / "serve.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "cellsearch.app.cli", "serve"],
        env=serve_env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 300
        address = None
        while address is None and time.monotonic() < deadline and server.poll() is None:
            found = re.search(r"serving on (\S+) ", log.read_text())
            address = found.group(1) if found else None
            time.sleep(0.2)
        if address is None:
            raise SystemExit(f"cellsearch serve did not start:\n{log.read_text()[-3000:]}")
        client_env = {**env, "CELLSEARCH_GRPC_ADDRESS": address}
        steps["ingest"], out = cli("ingest", str(work / "ref.h5ad"), "--wait", env=client_env)
        print(f"ingest: {steps['ingest']:.1f} s; {out.strip().splitlines()[-1]}", flush=True)
        annotated = work / "annotated.h5ad"
        steps["annotate"], _ = cli(
            "annotate", str(work / "query.h5ad"), "-o", str(annotated), env=client_env
        )
        baselines = {k: work / f"annotated-k{k}.h5ad" for k in args.baseline_k}
        for k, path in baselines.items():
            cli("annotate", str(work / "query.h5ad"), "-o", str(path), "-k", str(k), env=client_env)
        steps["search"], out = cli(
            "search",
            "--file",
            str(work / "query.h5ad"),
            "--tissue",
            tissue,
            "-k",
            "5",
            env=client_env,
        )
        hits = max(0, len(out.strip().splitlines()) - 1)
    finally:
        server.terminate()
        server.wait(60)

    scores = {"default": score(annotated)} | {f"k={k}": score(p) for k, p in baselines.items()}
    print(f"\nquery: studies {', '.join(query_studies)} ({tissue}); search returned {hits} rows")
    print(f"{'':16s}" + "".join(f"{name:>10s}" for name in scores) + "  default / first")
    for metric in ("accuracy", "macro_f1", "ontology_score", "unknown"):
        row = [scores[name][metric] for name in scores]
        ratio = row[0] / row[1] if len(row) > 1 and row[1] else float("nan")
        print(f"{metric:16s}" + "".join(f"{v:10.3f}" for v in row) + f"  {ratio:.2f}")
    print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in steps.items()))
    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "cells": args.cells,
        "studies": args.studies,
        "seed": args.seed,
        "query_studies": query_studies,
        "seconds": steps,
        "scores": scores,
    }
    (args.out / "bench_workflow.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
