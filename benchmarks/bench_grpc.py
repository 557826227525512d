"""gRPC overhead and throughput: the same search through the service and in-process.

Builds an embedded store of ``--cells`` simulated cells (clustered unit vectors with
tissue/disease payloads), then measures, in one run:

* latency p50/p99 of one-cell k-NN queries (unfiltered and "lung + ILD" filtered) called
  in-process through the search core (``cellsearch.search.query.search_vectors``, what the
  servicer calls) and through gRPC (``CellSearchClient.search``, auth on); the ratio is the
  service's overhead: decoding, filter planning is shared, encoding, the network stack;
* queries per second with ``--clients`` concurrent clients (threads, one channel each)
  through gRPC, beside the same threads calling the core in-process.

Usage: ``python benchmarks/bench_grpc.py --cells 200000 --queries 300``
(1M cells needs ~1 GB of RAM and minutes of indexing; pass ``--cells 1000000``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

TISSUES = {"UBERON:0002048": "lung", "UBERON:0000178": "blood", "UBERON:0002107": "liver"}
DISEASES = {"MONDO:0015925": "ILD", "PATO:0000461": "normal"}


def build_store(path: Path, n_cells: int, seed: int = 0):
    import ontology
    from vectorstore import CellRecord, open_store

    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(64, 128)).astype(np.float32)
    store = open_store(path=path)
    anc = {t: sorted(ontology.ancestors(t)) for t in [*TISSUES, *DISEASES]}
    tissues, diseases = list(TISSUES), list(DISEASES)
    batch = 20_000
    for start in range(0, n_cells, batch):
        n = min(batch, n_cells - start)
        c = rng.integers(0, len(centers), n)
        vecs = centers[c] + rng.normal(scale=0.4, size=(n, 128)).astype(np.float32)
        t = rng.integers(0, 3, n)
        d = rng.integers(0, 2, n)
        records = [
            CellRecord(
                dataset_id=f"bench/d{(start + i) % 20}",
                cell_id=f"c{start + i}",
                vector=vecs[i],
                payload={
                    "study_id": f"study{(start + i) % 20}",
                    "cell_type_id": "CL:0000235",
                    "tissue_id": tissues[t[i]],
                    "tissue_ancestors": anc[tissues[t[i]]],
                    "disease_id": diseases[d[i]],
                    "disease_ancestors": anc[diseases[d[i]]],
                },
            )
            for i in range(n)
        ]
        store.upsert(records)
    store.optimize()
    return store, centers


def percentiles(seconds: list[float]) -> tuple[float, float]:
    ms = np.asarray(seconds) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cells", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    from pydantic import SecretStr

    from cellsearch.client import CellSearchClient
    from cellsearch.platform.jobs import MemoryJobStore
    from cellsearch.platform.settings import Settings
    from cellsearch.search.filters import FilterSpec
    from cellsearch.search.query import QueryLimits, search_vectors
    from services.search.server import build_server

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-grpc-"))
    print(f"cpus={os.cpu_count()} cells={args.cells} queries={args.queries} k={args.k}")
    t0 = time.perf_counter()
    store, centers = build_store(workdir / "store", args.cells)
    print(f"store built in {time.perf_counter() - t0:.1f} s")

    rng = np.random.default_rng(1)
    queries = centers[rng.integers(0, len(centers), args.queries)] + rng.normal(
        scale=0.4, size=(args.queries, 128)
    ).astype(np.float32)
    limits = QueryLimits()
    lung_ild = FilterSpec(tissues=("lung",), diseases=("interstitial lung disease",))
    lung_ild_msg = {"tissues": ["lung"], "diseases": ["interstitial lung disease"]}

    token = "bench-token"
    settings = Settings(
        store_path=workdir / "unused",
        grpc_address="127.0.0.1:0",
        auth_token=SecretStr(token),
        grpc_workers=max(16, args.clients * 2),
    )
    server, port = build_server(
        settings, store=store, jobs=MemoryJobStore(), submit=lambda job_id: None
    )
    client = CellSearchClient(f"127.0.0.1:{port}", token=token)
    for q in queries[:20]:  # warm both paths (ontology, channel, caches)
        search_vectors(store, q[None, :], args.k, lung_ild, limits=limits)
        client.search(q, k=args.k, filter=lung_ild_msg)

    rows = []
    for label, spec, msg in (("unfiltered", None, None), ("lung+ILD", lung_ild, lung_ild_msg)):
        local, remote = [], []
        for q in queries:
            s = time.perf_counter()
            search_vectors(store, q[None, :], args.k, spec, limits=limits)
            local.append(time.perf_counter() - s)
            s = time.perf_counter()
            client.search(q, k=args.k, filter=msg)
            remote.append(time.perf_counter() - s)
        (lp50, lp99), (rp50, rp99) = percentiles(local), percentiles(remote)
        rows.append((label, lp50, lp99, rp50, rp99))
    print("\nlatency, one query cell, ms   in-process p50/p99   gRPC p50/p99   ratio p50")
    for label, lp50, lp99, rp50, rp99 in rows:
        print(
            f"  {label:<12} {lp50:10.2f} / {lp99:7.2f} {rp50:9.2f} / {rp99:7.2f}"
            f"   {rp50 / lp50:6.2f}x"
        )

    def qps(call, n_threads: int) -> float:
        per = args.queries // n_threads
        barrier = threading.Barrier(n_threads)

        def worker(i: int) -> None:
            fn = call()
            barrier.wait()
            for q in queries[i * per : (i + 1) * per]:
                fn(q)

        start = time.perf_counter()
        with ThreadPoolExecutor(n_threads) as pool:
            list(pool.map(worker, range(n_threads)))
        return per * n_threads / (time.perf_counter() - start)

    def local_call():
        return lambda q: search_vectors(store, q[None, :], args.k, lung_ild, limits=limits)

    clients = []

    def grpc_call():
        c = CellSearchClient(f"127.0.0.1:{port}", token=token)
        clients.append(c)
        return lambda q: c.search(q, k=args.k, filter=lung_ild_msg)

    q_local1, q_grpc1 = qps(local_call, 1), qps(grpc_call, 1)
    q_local, q_grpc = qps(local_call, args.clients), qps(grpc_call, args.clients)
    print("\nthroughput, lung+ILD filtered, queries/s     in-process   gRPC   ratio")
    print(
        f"  1 client                                 {q_local1:9.0f} {q_grpc1:6.0f} "
        f"{q_grpc1 / q_local1:6.2f}"
    )
    print(
        f"  {args.clients} concurrent clients                     {q_local:9.0f} {q_grpc:6.0f} "
        f"{q_grpc / q_local:6.2f}"
    )
    med = statistics.median(r[3] / r[1] for r in rows)
    print(f"\nmedian gRPC/in-process latency ratio: {med:.2f}x")
    for c in [client, *clients]:
        c.close()
    server.stop(None).wait()
    store.close()


if __name__ == "__main__":
    main()
