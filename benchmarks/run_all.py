"""Generate benchmarks/results/REPORT.md: cellsearch against its peers, with plots, one command.

    .venv/bin/python -m benchmarks.run_all                # small preset, ~10-15 min on 2 cores
    .venv/bin/python -m benchmarks.run_all --preset tiny  # smoke run, a few minutes
    .venv/bin/python -m benchmarks.run_all --preset full  # larger atlas, converged training

Offline, CPU only. See docs/evaluation.md for what each number means.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # also runnable as `python benchmarks/run_all.py`
    sys.path.insert(0, str(REPO_ROOT))

# Two shared cores: keep every numeric library to its share before anything imports them.
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(var, "2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")


def main(argv: list[str] | None = None) -> int:
    from benchmarks.eval.config import PRESETS, preset
    from benchmarks.eval.pipeline import run

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--atlas-cells", type=int, default=None)
    parser.add_argument("--scvi-epochs", type=int, default=None)
    parser.add_argument("--encoder-epochs", type=int, default=None)
    parser.add_argument(
        "--methods", default=None, help="comma-separated subset of the default methods"
    )
    parser.add_argument("--no-perf", action="store_true", help="skip benchmarks/bench_*.py")
    args = parser.parse_args(argv)

    cfg = preset(
        args.preset,
        seed=args.seed,
        atlas_cells=args.atlas_cells,
        scvi_epochs=args.scvi_epochs,
        encoder_epochs=args.encoder_epochs,
        methods=tuple(args.methods.split(",")) if args.methods else None,
        perf=False if args.no_perf else None,
    )
    import torch

    torch.set_num_threads(2)
    started = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f}s] {msg}", flush=True)

    command = "python -m benchmarks.run_all" + (
        f" {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip()
    )
    path = run(cfg, args.out, log, command.rstrip())
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
