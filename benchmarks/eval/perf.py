"""Gather the other benchmarks' performance figures in the same run as the evaluation.

Each ``benchmarks/bench_*.py`` script prints its own figures beside its baseline. We run every
one as a subprocess (so one script's crash or threads cannot disturb the evaluation), with the
smallest size its ``--help`` offers, under a time limit, and keep what it printed. A script that
also writes JSON (``--json PATH``) lets us plot from it, e.g. latency against selectivity.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = BENCH_DIR.parent

# Small sizes for the scripts we know (their defaults are sized for a full run, up to 1M cells).
# A script not listed here gets the smallest size its --help advertises, or its defaults.
KNOWN_ARGS: dict[str, list[str]] = {
    # its default (100k reference, 20k queries, 3 repetitions) needs ~10 minutes on 2 cores
    "bench_annotate.py": ["--reference", "30000", "--queries", "6000", "--reps", "1"],
    "bench_celldata.py": [
        "--cells", "20000", "--studies", "8", "--repeats", "1",
        "--realism-cells", "4000", "--realism-studies", "6",
    ],
    "bench_encoder_quality.py": ["--cells", "3000", "--query-cells", "1000", "--epochs", "3"],
    "bench_encoder_speed.py": ["--cells", "2048", "--repeats", "1"],
    "bench_grpc.py": ["--cells", "20000", "--queries", "100", "--clients", "4"],
    "bench_ingest.py": ["--cells", "20000", "--studies", "4"],
    "bench_ontology.py": ["--repeats", "3"],
    "bench_vectorstore.py": ["--size", "tiny", "--queries", "100"],
}  # fmt: skip

# Flags tried in order against a script's --help text: the first whose flag appears is used.
_SIZE_FLAGS: tuple[tuple[str, list[str]], ...] = (
    ("--quick", ["--quick"]),
    ("--size", ["--size", "small"]),
    ("--small", ["--small"]),
)


@dataclass
class BenchRun:
    """What one benchmark script printed, and how it ran."""

    script: str
    args: list[str]
    returncode: int
    seconds: float
    stdout: str
    stderr_tail: str
    data: dict | list | None = None
    notes: list[str] = field(default_factory=list)


def discover(bench_dir: Path = BENCH_DIR) -> list[Path]:
    """Every ``bench_*.py`` in ``benchmarks/``, sorted by name."""
    return sorted(bench_dir.glob("bench_*.py"))


def size_args(help_text: str) -> list[str]:
    """The smallest-size arguments a script's ``--help`` advertises (none when it has none)."""
    for flag, args in _SIZE_FLAGS:
        if re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", help_text):
            if flag == "--size":
                choices = re.search(r"--size\s*\{([^}]*)\}", help_text)
                if choices:
                    options = [c.strip() for c in choices.group(1).split(",")]
                    for preferred in ("tiny", "small", "quick", "smoke"):
                        if preferred in options:
                            return ["--size", preferred]
                    return ["--size", options[0]]
            return args
    return []


def run_script(path: Path, out_dir: Path, timeout_s: float = 240.0) -> BenchRun:
    """Run one script at its smallest size; never raises for the script's own failure."""
    python = sys.executable
    try:
        help_text = subprocess.run(
            [python, str(path), "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO_ROOT,
            check=False,
        ).stdout
    except subprocess.TimeoutExpired:
        help_text = ""
    args = list(KNOWN_ARGS.get(path.name, size_args(help_text)))
    json_path = out_dir / f"{path.stem}.json"
    if "--json" in help_text:
        args += ["--json", str(json_path)]
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            [python, str(path), *args],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            cwd=REPO_ROOT,
            check=False,
        )
        rc, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc = -1
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        stderr = f"timed out after {timeout_s:.0f} s"
    run = BenchRun(
        script=path.name,
        args=args,
        returncode=rc,
        seconds=time.perf_counter() - started,
        stdout=stdout.strip(),
        stderr_tail="\n".join(stderr.strip().splitlines()[-8:]),
    )
    if json_path.is_file():
        try:
            run.data = json.loads(json_path.read_text())
        except json.JSONDecodeError as exc:
            run.notes.append(f"unreadable JSON output: {exc}")
    return run


def selectivity_series(runs: list[BenchRun]) -> dict[str, list[tuple[float, float]]]:
    """``{series: [(selectivity, median latency ms), ...]}`` from any JSON that carries them.

    Accepts a list of records with ``selectivity`` and ``p50_ms``/``median_ms``/``latency_ms``
    keys (an optional ``series``/``mode``/``backend`` key names the line), at the top level or
    under a ``selectivity`` key.
    """
    series: dict[str, list[tuple[float, float]]] = {}
    for run in runs:
        data = run.data
        if isinstance(data, dict):
            data = data.get("selectivity", data.get("results"))
        if not isinstance(data, list):
            continue
        for rec in data:
            if not isinstance(rec, dict) or "selectivity" not in rec:
                continue
            lat = next((rec[k] for k in ("p50_ms", "median_ms", "latency_ms") if k in rec), None)
            if lat is None:
                continue
            name = str(rec.get("series", rec.get("mode", rec.get("backend", run.script))))
            series.setdefault(name, []).append((float(rec["selectivity"]), float(lat)))
    return series


def gather(
    out_dir: Path, log, timeout_s: float = 240.0, bench_dir: Path = BENCH_DIR
) -> list[BenchRun]:
    """Run every discovered script in turn (sequentially: the cores are shared)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = []
    for path in discover(bench_dir):
        log(f"  {path.name} ...")
        run = run_script(path, out_dir, timeout_s)
        log(f"  {path.name}: rc={run.returncode} in {run.seconds:.0f} s")
        runs.append(run)
    return runs
