"""Ontology benchmark: cache build, warm load, and lookups/s for resolve, ancestors and the
N x N related matrix, each beside a baseline measured in the same run.

Baselines:
- cache build and warm load vs parsing the source JSON (what every process would pay without
  the cache);
- resolve vs a linear scan of normalised labels and synonyms (no index);
- ancestors vs reading the parsed JSON dict (the closure as cellxgene-ontology-guide ships it);
- related matrix vs N*N ``is_related`` calls.

Usage: .venv/bin/python benchmarks/bench_ontology.py [--n 200] [--repeats 5] [--kinds cell_type]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ontology import KINDS, Ontology
from ontology._load import _read_json, bundled_sources
from ontology._names import normalise


def median_s(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_kind(kind: str, n: int, repeats: int, cache_root: Path) -> None:
    rng = random.Random(0)
    source = bundled_sources(kind)[0]  # type: ignore[arg-type]
    print(f"\n== {kind} ({source.name})")

    parse_s = median_s(lambda: _read_json(source), max(1, repeats // 2))
    cold_dir = cache_root / kind
    start = time.perf_counter()
    Ontology.load(kind, cache_dir=cold_dir)  # type: ignore[arg-type]
    build_s = time.perf_counter() - start
    warm_s = median_s(lambda: Ontology.load(kind, cache_dir=cold_dir).names, repeats)  # type: ignore[arg-type]
    print(f"parse source JSON (baseline) {parse_s * 1e3:8.1f} ms")
    print(f"cache build (parse+compile)  {build_s * 1e3:8.1f} ms")
    print(
        f"warm load incl. name index   {warm_s * 1e3:8.1f} ms   "
        f"{parse_s / warm_s:6.1f}x faster than parsing"
    )

    onto = Ontology.load(kind, cache_dir=cold_dir)  # type: ignore[arg-type]
    live = list(onto.term_ids())
    terms = rng.sample(live, min(n, len(live)))
    queries = [onto.label(t).upper() for t in terms[: n // 2]] + terms[n // 2 :]

    def resolve_all() -> None:
        for q in queries:
            with contextlib.suppress(ValueError):  # a label shared by two terms: still a lookup
                onto.resolve(q)

    resolve_rate = len(queries) / median_s(resolve_all, repeats)
    data = _read_json(source)
    few = queries[: max(1, min(20, n // 10))]

    def scan() -> None:
        for q in few:
            key = normalise(q)
            for entry in data.values():
                if normalise(entry.get("label", "")) == key:
                    break
                if any(normalise(s) == key for s in entry.get("synonyms", ())):
                    break

    scan_rate = len(few) / median_s(scan, 1)
    print(
        f"resolve                      {resolve_rate:10.0f} /s   "
        f"linear scan {scan_rate:8.1f} /s   {resolve_rate / scan_rate:8.0f}x"
    )

    def ancestors_cold() -> None:
        onto._closure.cache_clear()
        for t in terms:
            onto.ancestors(t)

    def ancestors_warm() -> None:
        for t in terms:
            onto.ancestors(t)

    def ancestors_json() -> None:
        for t in terms:
            frozenset(data[t]["ancestors"]) | {t}

    cold_rate = len(terms) / median_s(ancestors_cold, repeats)
    warm_rate = len(terms) / median_s(ancestors_warm, repeats)
    json_rate = len(terms) / median_s(ancestors_json, repeats)
    print(
        f"ancestors (first call)       {cold_rate:10.0f} /s   "
        f"JSON dict {json_rate:10.0f} /s   {cold_rate / json_rate:6.2f}x"
    )
    print(f"ancestors (memoised)         {warm_rate:10.0f} /s   {warm_rate / json_rate:6.2f}x")

    labels = [rng.choice(terms[: max(1, n // 4)]) for _ in range(n)]  # repeats, as in a batch
    matrix_s = median_s(lambda: onto.related_matrix(labels), repeats)
    pairwise_s = median_s(lambda: [[onto.is_related(a, b) for b in labels] for a in labels], 1)
    print(
        f"related matrix N={n:<4d}        {matrix_s * 1e3:8.2f} ms   "
        f"pairwise is_related {pairwise_s * 1e3:8.1f} ms   {pairwise_s / matrix_s:6.0f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="terms per lookup batch / matrix size")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (median reported)")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ontology-") as tmp:
        for kind in args.kinds:
            bench_kind(kind, args.n, args.repeats, Path(tmp))


if __name__ == "__main__":
    main()
