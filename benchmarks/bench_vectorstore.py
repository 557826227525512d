"""Filtered kNN: the embedded Qdrant engine against SCimilarity's two ways of filtering.

    .venv/bin/python benchmarks/bench_vectorstore.py --size small      # 20k cells, ~2-3 min
    .venv/bin/python benchmarks/bench_vectorstore.py --size medium     # 100k cells
    .venv/bin/python benchmarks/bench_vectorstore.py --cells 200000    # any size
    .venv/bin/python benchmarks/bench_vectorstore.py --size large      # 1M cells (long)
    ... --store-dir /tmp/bvs-1m --recall-queries 800   # keep the shard; recall over 1,000

One run, side by side, for filters selecting about 50%, 5%, 1% and 0.1% of the atlas:
  * qdrant-edge: one filtered HNSW query (payload indexes; a filter below the full-scan
    threshold is an exact scan of the subset via the index);
  * exact: numpy over the boolean-masked subset (SCimilarity's ``search_exhaustive``), also
    the ground truth for recall@k;
  * hnswlib post-filter: k' nearest over everything, then drop non-matching cells
    (SCimilarity's ``search_nearest`` + metadata filtering): recall collapses once fewer than
    k matching cells sit among the k' unfiltered neighbours.
Also: upsert throughput, index build time, RSS and disk per million cells with and without
int8 quantisation (RSS measured in a fresh process that opens the shard and runs queries).

The atlas is simulated but shaped like a real one: 200 cell types under 20 lineages (their
embeddings cluster by type, types cluster by lineage), 400 studies of Zipf-distributed sizes,
each in one of 30 tissues with a tissue-specific mix of types and one of 20 diseases (half of
the studies healthy), study batch shifts, and payloads with ancestor lists like the real ones.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
# One BLAS thread: single-query matmuls are too small to gain from two, and on shared cores
# a second spinning thread only adds jitter to the exact baseline.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from vectorstore import CellRecord, SearchFilter, StoreConfig, open_store  # noqa: E402

SIZES = {"tiny": 5_000, "small": 20_000, "medium": 100_000, "large": 1_000_000}
TARGETS = (0.5, 0.05, 0.01, 0.001)
N_TYPES, N_LINEAGES, N_TISSUES, N_DISEASES, N_STUDIES = 200, 20, 30, 20, 400
DIM = 128


# --------------------------------------------------------------------------- atlas
@dataclass
class Atlas:
    """Embeddings plus integer-coded metadata (payloads are built from codes in batches)."""

    x: np.ndarray  # (n, 128) float32, unit rows
    cell_type: np.ndarray
    study: np.ndarray
    donor: np.ndarray
    study_tissue: np.ndarray  # per study
    study_disease: np.ndarray  # per study
    type_centres: np.ndarray
    lineage_of: np.ndarray

    @property
    def tissue(self) -> np.ndarray:
        return self.study_tissue[self.study]

    @property
    def disease(self) -> np.ndarray:
        return self.study_disease[self.study]


def _unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=-1, keepdims=True)).astype(np.float32)


def simulate(n: int, seed: int = 0) -> Atlas:
    rng = np.random.default_rng(seed)
    lineage_centres = rng.normal(size=(N_LINEAGES, DIM))
    lineage_of = np.arange(N_TYPES) // (N_TYPES // N_LINEAGES)
    type_centres = lineage_centres[lineage_of] + 0.6 * rng.normal(size=(N_TYPES, DIM))
    # studies: Zipf sizes, one tissue (popular tissues more studied), one disease (half healthy)
    sizes = 1.0 / np.arange(1, N_STUDIES + 1) ** 0.9
    sizes = rng.permutation(sizes / sizes.sum())
    tissue_pop = 1.0 / np.arange(1, N_TISSUES + 1) ** 0.8
    study_tissue = rng.choice(N_TISSUES, N_STUDIES, p=tissue_pop / tissue_pop.sum())
    study_disease = np.where(rng.random(N_STUDIES) < 0.5, 0, rng.integers(1, N_DISEASES, N_STUDIES))
    study_shift = 0.25 * rng.normal(size=(N_STUDIES, DIM))
    # each tissue holds ~40 types with Dirichlet proportions
    tissue_mix = np.zeros((N_TISSUES, N_TYPES))
    for t in range(N_TISSUES):
        types = rng.choice(N_TYPES, 40, replace=False)
        tissue_mix[t, types] = rng.dirichlet(np.full(40, 0.5))
    study = np.sort(rng.choice(N_STUDIES, n, p=sizes))  # stored dataset by dataset
    cell_type = np.empty(n, dtype=np.int64)
    for t in range(N_TISSUES):
        idx = np.flatnonzero(study_tissue[study] == t)
        cell_type[idx] = rng.choice(N_TYPES, idx.size, p=tissue_mix[t])
    donor = rng.integers(0, 6, n)
    x = np.empty((n, DIM), dtype=np.float32)
    for s in range(0, n, 100_000):
        e = min(n, s + 100_000)
        noise = 0.55 * rng.normal(size=(e - s, DIM))
        x[s:e] = _unit(type_centres[cell_type[s:e]] + study_shift[study[s:e]] + noise)
    return Atlas(x, cell_type, study, donor, study_tissue, study_disease, type_centres, lineage_of)


def type_ancestors(t: int, lineage_of: np.ndarray) -> list[str]:
    lin = int(lineage_of[t])
    return [f"CT:{t:04d}", f"CT:L{lin:02d}", f"CT:G{lin // 4}", "CT:ROOT"]


def tissue_ancestors(t: int) -> list[str]:
    return [f"TI:{t:02d}", f"TI:S{t // 5}", "TI:ROOT"]


def disease_ancestors(d: int) -> list[str]:
    return ["PATO:0000461"] if d == 0 else [f"DI:{d:02d}", f"DI:G{d // 5}", "DI:ROOT"]


def records(atlas: Atlas, start: int, end: int) -> list[CellRecord]:
    out = []
    for i in range(start, end):
        t, s = int(atlas.cell_type[i]), int(atlas.study[i])
        ti, di = int(atlas.study_tissue[s]), int(atlas.study_disease[s])
        d_anc = disease_ancestors(di)
        out.append(
            CellRecord(
                f"DS{s:03d}",
                f"c{i}",
                atlas.x[i],
                {
                    "study_id": f"ST{s:03d}",
                    "donor_id": f"ST{s:03d}-D{int(atlas.donor[i])}",
                    "sample_id": f"ST{s:03d}-D{int(atlas.donor[i])}-S",
                    "cell_type_id": f"CT:{t:04d}",
                    "cell_type_ancestors": type_ancestors(t, atlas.lineage_of),
                    "tissue_id": f"TI:{ti:02d}",
                    "tissue_ancestors": tissue_ancestors(ti),
                    "disease_id": d_anc[0],
                    "disease_ancestors": d_anc,
                    "assay": "EFO:0009922",
                    "model_version": "bench-1",
                },
            )
        )
    return out


# --------------------------------------------------------------------------- filters
@dataclass
class Case:
    name: str
    flt: SearchFilter
    mask: np.ndarray

    @property
    def selectivity(self) -> float:
        return float(self.mask.mean())


def candidate_filters(atlas: Atlas) -> list[Case]:
    lin = atlas.lineage_of[atlas.cell_type]
    tis, dis = atlas.tissue, atlas.disease
    cands = [Case("healthy", SearchFilter(must={"disease_id": ["PATO:0000461"]}), dis == 0)]
    cands.append(
        Case("not healthy", SearchFilter(must_not={"disease_id": ["PATO:0000461"]}), dis != 0)
    )
    for g in range(N_LINEAGES // 4):
        cands.append(
            Case(
                f"group CT:G{g}",
                SearchFilter(must={"cell_type_ancestors": [f"CT:G{g}"]}),
                lin // 4 == g,
            )
        )
    for ln in range(N_LINEAGES):
        cands.append(
            Case(
                f"lineage CT:L{ln:02d}",
                SearchFilter(must={"cell_type_ancestors": [f"CT:L{ln:02d}"]}),
                lin == ln,
            )
        )
    for t in range(N_TISSUES):
        cands.append(
            Case(
                f"tissue TI:{t:02d}",
                SearchFilter(must={"tissue_ancestors": [f"TI:{t:02d}"]}),
                tis == t,
            )
        )
        for ln in range(0, N_LINEAGES, 3):
            cands.append(
                Case(
                    f"tissue TI:{t:02d} & lineage CT:L{ln:02d}",
                    SearchFilter(
                        must={
                            "tissue_ancestors": [f"TI:{t:02d}"],
                            "cell_type_ancestors": [f"CT:L{ln:02d}"],
                        }
                    ),
                    (tis == t) & (lin == ln),
                )
            )
    for t in range(0, N_TYPES, 7):
        cands.append(
            Case(
                f"type CT:{t:04d}",
                SearchFilter(must={"cell_type_id": [f"CT:{t:04d}"]}),
                atlas.cell_type == t,
            )
        )
        for d in range(1, N_DISEASES, 4):
            cands.append(
                Case(
                    f"type CT:{t:04d} & disease DI:{d:02d}",
                    SearchFilter(
                        must={
                            "cell_type_ancestors": [f"CT:{t:04d}"],
                            "disease_ancestors": [f"DI:{d:02d}"],
                        }
                    ),
                    (atlas.cell_type == t) & (dis == d),
                )
            )
    return cands


def pick_cases(atlas: Atlas, k: int) -> list[Case]:
    """For each target selectivity the candidate closest to it (log scale), >= k cells."""
    cands = [c for c in candidate_filters(atlas) if c.mask.sum() >= k]
    out = []
    for target in TARGETS:
        best = min(cands, key=lambda c: abs(np.log(c.selectivity / target)))
        out.append(best)
    return out


# --------------------------------------------------------------------------- searchers
def exact_search(x: np.ndarray, q: np.ndarray, mask: np.ndarray, k: int) -> np.ndarray:
    """Exact cosine top-k over the masked subset (SCimilarity's search_exhaustive)."""
    idx = np.flatnonzero(mask)
    scores = x[idx] @ q
    kk = min(k, idx.size)
    top = np.argpartition(-scores, kk - 1)[:kk]
    return idx[top[np.argsort(-scores[top])]]


def exact_truth(x: np.ndarray, queries: np.ndarray, mask: np.ndarray, k: int) -> list[set[int]]:
    """The exact top-k of many queries at once (ground truth, never timed): the subset is
    gathered once and scored in blocks, so recall over 1,000 queries at 1M cells costs
    seconds, not the ~100 ms per query of the timed baseline."""
    idx = np.flatnonzero(mask)
    sub = x[idx]
    kk = min(k, idx.size)
    out: list[set[int]] = []
    for start in range(0, len(queries), 64):
        scores = queries[start : start + 64] @ sub.T
        top = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        out.extend(set(idx[row].tolist()) for row in top)
    return out


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(values, p)) if values else float("nan")


def rss_kb(kind: str = "VmRSS") -> int:
    """Resident memory in KB: VmRSS (all), RssAnon (heap: the real RAM cost) or RssFile
    (mapped file pages: page cache the kernel can drop and re-read)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(kind + ":"):
            return int(line.split()[1])
    return 0


def du_bytes(path: Path, skip: str | None = None) -> int:
    total = 0
    for p in path.rglob("*"):
        if p.is_file() and not (skip and skip in p.parts):
            total += p.stat().st_blocks * 512
    return total


def measure_rss(path: str, queries_path: str) -> None:
    """Child-process mode: open the shard, run queries, print RSS growth as JSON."""
    q = np.load(queries_path)
    kinds = ("VmRSS", "RssAnon", "RssFile")
    before = {k: rss_kb(k) for k in kinds}
    store = open_store(path=Path(path))
    for row in q:
        store.search(row, 50, SearchFilter(must={"disease_id": ["PATO:0000461"]}))
        store.search(row, 50)
    after = {k: rss_kb(k) for k in kinds}
    store.close()
    growth = {k: after[k] - before[k] for k in kinds}
    print(json.dumps({**growth, "rss_before_kb": 0, "rss_after_kb": growth["VmRSS"]}))


# --------------------------------------------------------------------------- main
def build_store(atlas: Atlas, path: Path, cfg: StoreConfig, batch: int, log) -> dict:
    n = len(atlas.x)
    store = open_store(path=path, config=cfg)
    upsert_s = 0.0
    for s in range(0, n, batch):
        recs = records(atlas, s, min(n, s + batch))
        t0 = time.perf_counter()
        store.upsert(recs)
        upsert_s += time.perf_counter() - t0
    log(f"    upserted {n:,} in {upsert_s:.1f} s; building the index ...")
    t0 = time.perf_counter()
    store.optimize()
    build_s = time.perf_counter() - t0
    info = store.info()
    store.close()
    return {"upsert_s": upsert_s, "build_s": build_s, "info": info}


def reuse_or_build(atlas: Atlas, path: Path, cfg: StoreConfig, batch: int, log) -> dict:
    """Build the shard, or reuse one a previous run left at ``path`` with the same cells.

    A 1M-cell build takes tens of minutes on 2 cores; ``--store-dir`` keeps the shard and
    its build figures so later runs (other query-time variants) skip it.
    """
    meta = path / "build.json"
    n = len(atlas.x)
    if meta.is_file():
        res = json.loads(meta.read_text())
        if res.get("cells") == n:
            log(f"    reusing the shard at {path} (built in {res['build_s']:.1f} s)")
            return res
        msg = f"{path} holds a shard of {res.get('cells')} cells, not {n}; pick another dir"
        raise SystemExit(msg)
    if path.exists():
        shutil.rmtree(path)  # an interrupted build: start again
    res = build_store(atlas, path, cfg, batch, log)
    res["cells"] = n
    meta.write_text(json.dumps(res))
    return res


def hnswlib_index(atlas: Atlas, root: Path, args: argparse.Namespace, log):
    """hnswlib over every cell (the post-filter baseline), saved beside a persistent shard."""
    import hnswlib

    n = len(atlas.x)
    m = args.hnswlib_m or args.m
    efc = args.hnswlib_ef_construct or args.ef_construct
    hidx = hnswlib.Index(space="cosine", dim=DIM)
    saved = root / f"hnswlib-{n}-m{m}-efc{efc}.bin"
    meta = saved.with_suffix(".json")
    if args.store_dir is not None and saved.is_file() and meta.is_file():
        hidx.load_index(str(saved), max_elements=n)
        build_s = json.loads(meta.read_text())["build_s"]
        log(f"  hnswlib loaded from {saved} (built in {build_s:.1f} s)")
    else:
        t0 = time.perf_counter()
        hidx.init_index(max_elements=n, M=m, ef_construction=efc)
        hidx.set_num_threads(2)
        hidx.add_items(atlas.x, np.arange(n))
        build_s = time.perf_counter() - t0
        if args.store_dir is not None:
            hidx.save_index(str(saved))
            meta.write_text(json.dumps({"build_s": build_s}))
    hidx.set_num_threads(1)
    kprime = min(n, args.post_k)
    hidx.set_ef(max(kprime, args.ef))
    log(f"  hnswlib m={m} ef_construct={efc} in {build_s:.1f} s (post-filter k'={kprime})")
    return hidx, {"build_s": build_s, "k_prime": kprime, "m": m, "ef_construct": efc}


def edge_variants(base: StoreConfig, spec: str) -> list[tuple[str, StoreConfig]]:
    """Query-time variants measured on the same shard: ``default``, ``acorn=0.1``, ``ef=512``."""
    out = []
    for item in (v.strip() for v in spec.split(",")):
        if not item:
            continue
        if item == "default":
            out.append(("qdrant-edge", base))
        elif item.startswith("acorn="):
            sel = float(item.split("=", 1)[1])
            out.append((f"qdrant-edge acorn<{sel:g}", replace(base, acorn_max_selectivity=sel)))
        elif item == "raw":
            plain = replace(base, compile_filters=False, post_filter_min_share=None)
            out.append(("qdrant-edge filter as is", plain))
        elif item == "nopost":
            out.append(("qdrant-edge no post-filter", replace(base, post_filter_min_share=None)))
        elif item.startswith("ef="):
            ef = int(item.split("=", 1)[1])
            out.append((f"qdrant-edge ef={ef}", replace(base, search_ef=ef)))
        else:
            msg = (
                f"unknown variant {item!r}; use default, raw (filters as they are: no payload "
                "groups, no post-filtering), nopost, acorn=<max selectivity> or ef=<int>"
            )
            raise SystemExit(msg)
    return out


def run(args: argparse.Namespace) -> dict:
    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    n = args.cells or SIZES[args.size]
    k = 50
    t0 = time.perf_counter()
    atlas = simulate(n, seed=args.seed)
    log(f"simulated {n:,} cells in {time.perf_counter() - t0:.1f} s")
    cases = pick_cases(atlas, k)

    def query_set(seed: int, count: int | None = None) -> np.ndarray:
        """Fresh cells of random types with a study-like shift (not stored)."""
        count = args.queries if count is None else count
        rng = np.random.default_rng(seed)
        qt = rng.integers(0, N_TYPES, count)
        return _unit(
            atlas.type_centres[qt]
            + 0.25 * rng.normal(size=(count, DIM))
            + 0.55 * rng.normal(size=(count, DIM))
        )

    queries = query_set(args.seed + 1)

    persistent = args.store_dir is not None
    if persistent:
        root = Path(args.store_dir)
        root.mkdir(parents=True, exist_ok=True)
    else:
        root = Path(tempfile.mkdtemp(prefix="bench-vs-", dir=args.workdir))
    payload_fields = tuple(f for f in args.payload_fields.split(",") if f)
    out: dict = {
        "cells": n,
        "k": k,
        "queries": args.queries,
        "recall_queries": args.queries + args.recall_queries,
        "configs": [],
        "selectivity": [],
    }
    try:
        quant_modes = ["int8", "none"] if not args.skip_float else ["int8"]
        stores: dict[str, Path] = {}
        for quant in quant_modes:
            cfg = StoreConfig(
                quantization=quant,
                hnsw_m=args.m,
                hnsw_ef_construct=args.ef_construct,
                search_ef=args.ef,
                hnsw_payload_fields=payload_fields,
                full_scan_threshold_kb=args.full_scan_kb,
                segments=args.segments,
            )
            path = root / f"store-{quant}"
            log(
                f"  qdrant-edge ({quant}): m={args.m} ef_construct={args.ef_construct} "
                f"payload-aware fields={list(payload_fields) or 'none'}"
            )
            res = reuse_or_build(atlas, path, cfg, args.batch, log)
            shard = path / "cells"
            np.save(root / "q.npy", queries[: min(50, len(queries))])
            child = subprocess.run(
                [sys.executable, __file__, "--measure-rss", str(path), str(root / "q.npy")],
                capture_output=True,
                text=True,
                check=True,
            )
            rss = json.loads(child.stdout.strip().splitlines()[-1])
            rss_bytes = rss["VmRSS"] * 1024
            rec = {
                "quantization": quant,
                "upsert_per_s": n / res["upsert_s"],
                "build_s": res["build_s"],
                "segments": res["info"]["segments"],
                "indexed_vectors": res["info"]["indexed_vectors"],
                "rss_bytes_per_cell": rss_bytes / n,
                "rss_anon_bytes_per_cell": rss["RssAnon"] * 1024 / n,
                "rss_file_bytes_per_cell": rss["RssFile"] * 1024 / n,
                "disk_bytes_per_cell": du_bytes(shard, skip="wal") / n,
                "wal_bytes": du_bytes(shard / "wal"),
            }
            out["configs"].append(rec)
            stores[quant] = path
            log(f"    built in {res['build_s']:.1f} s, {rec['rss_bytes_per_cell']:.0f} B/cell RSS")

        hidx, out["hnswlib"] = hnswlib_index(atlas, root, args, log)
        kprime = out["hnswlib"]["k_prime"]

        store = open_store(
            path=stores["int8"],
            config=StoreConfig(search_ef=args.ef, acorn_max_selectivity=args.acorn),
        )
        variants = edge_variants(store.config, args.variants)
        # A serving process's steady state: the shard's memory-mapped pages (graph, vectors,
        # payload indexes) are mapped in by earlier queries. A fresh process pays a page
        # fault on each first touch, which at 1M cells made the first variant measured look
        # 2-3x slower than later ones. Warm with other queries, never the measured ones.
        warm_rng = np.random.default_rng(args.seed + 7)
        warm_t = warm_rng.integers(0, N_TYPES, args.warmup)
        t0 = time.perf_counter()
        for i in range(args.warmup):
            q = _unit(atlas.type_centres[warm_t[i]] + 0.6 * warm_rng.normal(size=DIM))
            store.search(q, k, cases[i % len(cases)].flt)
        if args.warmup:
            log(f"  warm-up: {args.warmup} other queries in {time.perf_counter() - t0:.0f} s")
        for ci, case in enumerate(cases):
            # Each series gets its own fresh queries: a query repeated by the next series
            # finds its graph neighbourhood in cache (measured 1.2-1.5x at 1M cells).
            queries = query_set(args.seed + 1 + 1000 * ci)
            truth = exact_truth(atlas.x, queries, case.mask, k)
            rows = {}
            # exact numpy over the masked subset (mask precomputed: favours the baseline)
            lat = []
            for q in queries:
                t = time.perf_counter()
                exact_search(atlas.x, q, case.mask, k)
                lat.append((time.perf_counter() - t) * 1e3)
            rows["exact numpy"] = (lat, 1.0)
            # qdrant-edge filtered HNSW, once per query-time variant
            # Ground truth for every series first: numpy's BLAS threads spin for a while
            # after each product, which slowed queries timed right after one by up to 2x.
            planned = []
            for vi, (label, vcfg) in enumerate(variants):
                vq = query_set(args.seed + 2 + 1000 * ci + 10 * vi)
                vtruth = exact_truth(atlas.x, vq, case.mask, k)
                planned.append((label, vcfg, vq, vtruth))
            time.sleep(1.0)
            # Interleaved, in an order rotated per query: whatever slows the query after a
            # switch (caches, page faults, BLAS threads parking) falls on every series alike.
            lats: list[list[float]] = [[] for _ in planned]
            recs: list[list[float]] = [[] for _ in planned]
            for i in range(args.queries):
                for j in np.roll(np.arange(len(planned)), i):
                    _, vcfg, vq, vtruth = planned[j]
                    store.config = vcfg
                    t = time.perf_counter()
                    (hits,) = store.search(vq[i], k, case.flt)
                    lats[j].append((time.perf_counter() - t) * 1e3)
                    got = {int(h.cell_id[1:]) for h in hits}
                    recs[j].append(len(got & vtruth[i]) / len(vtruth[i]))
            # Recall of a broad filter varies with the queries (0.977-0.998 between sets of
            # 100 at 1M cells): more queries, untimed, narrow it without lengthening the run.
            for j, (_, vcfg, _, _) in enumerate(planned if args.recall_queries else []):
                extra = query_set(args.seed + 3 + 1000 * ci + 10 * j, args.recall_queries)
                store.config = vcfg
                hits = store.search(extra, k, case.flt)
                for got, want in zip(hits, exact_truth(atlas.x, extra, case.mask, k), strict=True):
                    recs[j].append(len({int(h.cell_id[1:]) for h in got} & want) / len(want))
            for j, (label, *_) in enumerate(planned):
                rows[label] = (lats[j], float(np.mean(recs[j])))
            # hnswlib k' then filter
            lat, rec = [], []
            for q, tr in zip(queries, truth, strict=True):
                t = time.perf_counter()
                labels, _ = hidx.knn_query(q, k=kprime)
                kept = [i for i in labels[0] if case.mask[i]][:k]
                lat.append((time.perf_counter() - t) * 1e3)
                rec.append(len(set(kept) & tr) / len(tr))
            rows[f"hnswlib post-filter k'={kprime}"] = (lat, float(np.mean(rec)))
            for series, (lat, recall) in rows.items():
                out["selectivity"].append(
                    {
                        "series": series,
                        "filter": case.name,
                        "selectivity": case.selectivity,
                        "p50_ms": pct(lat, 50),
                        "p99_ms": pct(lat, 99),
                        "recall_at_50": recall,
                    }
                )
            log(f"  {case.name}: {case.selectivity:.4%} done")
        store.close()
    finally:
        if not (args.keep or persistent):
            shutil.rmtree(root, ignore_errors=True)
    return out


def report(out: dict) -> str:
    lines = [
        f"bench_vectorstore: {out['cells']:,} simulated cells, k={out['k']}, "
        f"{out['queries']} queries per filter, one query per call"
        + (
            f" (qdrant-edge recall over {out['recall_queries']})"
            if out.get("recall_queries", out["queries"]) > out["queries"]
            else ""
        ),
        "",
        f"{'filter (selectivity)':44} {'method':30} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'recall@50':>9} {'p50 vs exact':>12}",
    ]
    exact = {r["filter"]: r["p50_ms"] for r in out["selectivity"] if r["series"] == "exact numpy"}
    for r in out["selectivity"]:
        label = f"{r['filter']} ({r['selectivity']:.2%})"
        ratio = r["p50_ms"] / exact[r["filter"]]
        lines.append(
            f"{label:44} {r['series']:30} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} "
            f"{r['recall_at_50']:9.3f} {ratio:11.2f}x"
        )
    lines += [
        "",
        f"{'store':10} {'upsert/s':>10} {'build s':>8} {'RSS B/cell':>11} {'anon':>6} "
        f"{'file':>6} {'disk B/cell':>12} {'segments':>8}",
    ]
    for c in out["configs"]:
        lines.append(
            f"{'edge ' + c['quantization']:10} {c['upsert_per_s']:10,.0f} {c['build_s']:8.1f} "
            f"{c['rss_bytes_per_cell']:11.0f} {c.get('rss_anon_bytes_per_cell', 0):6.0f} "
            f"{c.get('rss_file_bytes_per_cell', 0):6.0f} {c['disk_bytes_per_cell']:12.0f} "
            f"{c['segments']:8d}"
        )
    h = out["hnswlib"]
    lines.append(
        f"hnswlib build (baseline, no payloads, m={h.get('m')} "
        f"ef_construct={h.get('ef_construct')}): {h['build_s']:.1f} s"
    )
    lines.append(
        "RSS: growth of a fresh process that opens the shard and runs 100 queries (anon: heap, "
        "the RAM it needs; file: mapped pages the kernel may drop), incl. fixed costs such as "
        "the 64 MB mapped WAL; x 1e6 = bytes per million cells. Disk excludes the WAL."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--cells", type=int, default=None, help="overrides --size")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--m", type=int, default=StoreConfig.hnsw_m)
    parser.add_argument("--ef-construct", type=int, default=StoreConfig.hnsw_ef_construct)
    parser.add_argument("--ef", type=int, default=StoreConfig.search_ef)
    parser.add_argument("--full-scan-kb", type=int, default=StoreConfig.full_scan_threshold_kb)
    parser.add_argument("--segments", type=int, default=StoreConfig.segments)
    parser.add_argument("--acorn", type=float, default=None, help="ACORN max selectivity")
    parser.add_argument(
        "--payload-fields",
        default=",".join(StoreConfig.hnsw_payload_fields),
        help="comma-separated fields given payload-aware HNSW links",
    )
    parser.add_argument("--post-k", type=int, default=1000, help="hnswlib k' before filtering")
    parser.add_argument(
        "--recall-queries",
        type=int,
        default=0,
        help="more queries per qdrant-edge series, untimed, for recall@50 only",
    )
    parser.add_argument(
        "--warmup", type=int, default=1000, help="unmeasured queries first (steady state)"
    )
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--skip-float", action="store_true", help="build only the int8 store")
    parser.add_argument("--workdir", default=None, help="where shards are built (default /tmp)")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument(
        "--store-dir",
        default=None,
        help="keep the shard and hnswlib index here and reuse them on the next run",
    )
    parser.add_argument(
        "--variants",
        default="default",
        help="query-time qdrant-edge series on the same shard, e.g. default,raw,acorn=0.1,ef=512",
    )
    parser.add_argument("--hnswlib-m", type=int, default=None, help="baseline graph (default --m)")
    parser.add_argument("--hnswlib-ef-construct", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--measure-rss", nargs=2, metavar=("STORE", "QUERIES"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.measure_rss:
        measure_rss(*args.measure_rss)
        return 0
    if args.size == "small" and args.cells is None:
        args.queries = min(args.queries, 100)
    out = run(args)
    print(report(out))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
