"""Where ingestion stalls a serving process: the longest GIL hold per job state.

Runs one ingestion job in this process (the real pipeline, the configured encoder, an embedded
store with its default subprocess index build) while a thread that sleeps 5 ms at a time
records how late it wakes up. A late wake-up is time the GIL was held elsewhere, which is
time a gRPC thread of ``cellsearch serve`` could not answer, health included.

    python benchmarks/bench_gil_stalls.py --cells 30000

Measured 2026-12-01 (2 shared cores, load average ~7), 30k cells: VALIDATING max 286 ms,
EMBEDDING max 173 ms, UPSERTING (build on a copy in a subprocess + swap) max 675 ms with
p99 12 ms; the build itself 19.3 s, outside this process.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=30_000)
    args = parser.parse_args()

    from celldata.simulate import make_atlas
    from cellsearch.ingest.pipeline import IngestOptions, ingest
    from cellsearch.platform.factories import load_encoder, warm_encoder
    from cellsearch.platform.jobs import MemoryJobStore
    from cellsearch.platform.settings import Settings
    from vectorstore import open_store

    work = Path(tempfile.mkdtemp(prefix="bench-gil-"))
    path = make_atlas(work / "inbox" / "a.h5ad", n_cells=args.cells, n_studies=2, seed=1).path
    encoder = load_encoder(Settings(), device="cpu")
    warm_encoder(encoder)
    store = open_store(path=work / "store")
    jobs = MemoryJobStore()
    job = jobs.create(path=str(path), study_id="s", dataset_id="d", metadata={})
    gaps: list[tuple[float, str]] = []
    done = threading.Event()

    def tick() -> None:
        last = time.perf_counter()
        while not done.is_set():
            time.sleep(0.005)
            now = time.perf_counter()
            gaps.append((now - last - 0.005, str(jobs.get(job.job_id).state)))
            last = now

    ticker = threading.Thread(target=tick)
    ticker.start()
    started = time.perf_counter()
    options = IngestOptions(allowed_roots=(work / "inbox",))
    result = ingest(job.job_id, jobs=jobs, store=store, encoder=encoder, options=options)
    done.set()
    ticker.join()
    store.close()
    print(f"{result.state} in {time.perf_counter() - started:.1f} s: {result.stage_seconds}")
    by_state: dict[str, list[float]] = {}
    for gap, state in gaps:
        by_state.setdefault(state, []).append(gap * 1000)
    for state, ms in by_state.items():
        print(
            f"{state:<11} ticks {len(ms):>5}  max late {max(ms):6.0f} ms  "
            f"p99 {np.percentile(ms, 99):5.0f} ms"
        )


if __name__ == "__main__":
    main()
