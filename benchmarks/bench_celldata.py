"""celldata figures: generator throughput, reader throughput and peak RSS (whole vs streamed),
and the realism check (PCA+kNN within study vs held-out studies vs chance).

    .venv/bin/python benchmarks/bench_celldata.py                 # 1M cells (minutes)
    .venv/bin/python benchmarks/bench_celldata.py --cells 100000  # bounded run

Each read runs in its own child process so its peak RSS (VmHWM) is its own. The baseline
is reading the whole file with ``anndata.read_h5ad``; streamed reads are reported beside it
as ratios. Reads are repeated ``--repeats`` times; medians are printed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, sys, time
mode, path, chunk = sys.argv[1], sys.argv[2], int(sys.argv[3])
t = time.perf_counter()
if mode == "whole":
    import anndata as ad
    a = ad.read_h5ad(path)
    n, nnz = a.n_obs, a.X.nnz
else:
    from celldata.read import iter_chunks
    n = nnz = 0
    for c in iter_chunks(path, chunk_size=chunk):
        n += c.n_cells
        nnz += c.X.nnz
secs = time.perf_counter() - t
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork+exec.
with open("/proc/self/status") as f:
    hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))
print(json.dumps({"cells": n, "nnz": nnz, "seconds": secs, "peak_rss_mb": hwm / 1024}))
"""


def _read(mode: str, path: Path, chunk: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(path), str(chunk)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=1_000_000)
    parser.add_argument("--studies", type=int, default=40)
    parser.add_argument("--chunk", type=int, default=8192, help="reader chunk size (cells)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--realism-cells", type=int, default=20_000)
    parser.add_argument("--realism-studies", type=int, default=12)
    parser.add_argument("--skip-whole", action="store_true", help="skip the whole-file baseline")
    parser.add_argument("--path", type=Path, default=None, help="reuse or keep the atlas here")
    args = parser.parse_args()

    from celldata.realism import batch_effect_check
    from celldata.simulate import make_atlas, simulate_atlas

    with tempfile.TemporaryDirectory() as tmp:
        path = args.path or Path(tmp) / "atlas.h5ad"
        if not path.exists():
            summary = make_atlas(path, n_cells=args.cells, n_studies=args.studies, seed=0)
            size_mb = path.stat().st_size / 2**20
            print(
                f"generator: {summary.n_cells:,} cells x {summary.n_genes} genes, "
                f"{summary.n_studies} studies, {summary.n_donors} donors, "
                f"{summary.nnz / summary.n_cells:.0f} nnz/cell, {size_mb:.0f} MiB: "
                f"{summary.seconds:.1f} s = {summary.cells_per_second:,.0f} cells/s"
            )
        results: dict[str, dict[str, float]] = {}
        for mode in ("stream", *(() if args.skip_whole else ("whole",))):
            runs = [_read(mode, path, args.chunk) for _ in range(args.repeats)]
            results[mode] = {
                "seconds": statistics.median(r["seconds"] for r in runs),
                "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs),
                "cells": runs[0]["cells"],
            }
        for mode, r in results.items():
            label = (
                "read whole (anndata.read_h5ad, baseline)"
                if mode == "whole"
                else (f"streamed (iter_chunks, chunk={args.chunk})")
            )
            print(
                f"{label}: {r['cells'] / r['seconds']:,.0f} cells/s "
                f"(median of {args.repeats}: {r['seconds']:.2f} s), "
                f"peak RSS {r['peak_rss_mb']:.0f} MiB"
            )
        if "whole" in results:
            s, w = results["stream"], results["whole"]
            print(
                f"streamed / whole: throughput x{w['seconds'] / s['seconds']:.2f}, "
                f"peak RSS x{s['peak_rss_mb'] / w['peak_rss_mb']:.2f}"
            )

    t = time.perf_counter()
    adata = simulate_atlas(args.realism_cells, args.realism_studies, seed=1)
    report = batch_effect_check(adata)
    elapsed = time.perf_counter() - t
    print(f"realism ({args.realism_cells:,} cells, {elapsed:.0f} s): {report.summary()}")


if __name__ == "__main__":
    main()
