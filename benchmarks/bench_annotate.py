"""Annotation: speed and quality of the ontology-consistent vote, beside SCimilarity's way.

One simulated atlas (mixed-granularity labels, many studies) is split by study: the
reference (default 100,000 cells) and the query (default 20,000 cells from studies the
reference never saw). One cell type is held out of the reference to measure the unknown
flag. Every method annotates the same queries in one run:

* **grpc**: ``CellSearchClient.annotate`` on the query AnnData (raw counts) against a real
  server over the embedded store: embedding, kNN, vote and transport, end to end;
* **grpc (embeddings)**: the same with embeddings sent (no encoder on the path);
* **in-process**: ``CellEncoder.embed`` then ``Annotator.annotate`` (no transport);
* **scimilarity**: hnswlib kNN (k=50) plus a per-cell Python vote (SCimilarity's
  ``get_predictions_knn`` way), on the same embeddings; index build timed apart;
* **exact**: exact numpy kNN (blocked matmul) plus the same per-cell vote.

Quality on the query's true (fine) types, new vote vs the old one (main's per-cell vote with
its LCA pooling, reproduced below) on the same neighbours: exact-label macro-F1, the ontology
score (partial credit along the Cell Ontology), cells labelled above the floor. Unknown flag:
AUROC of the distance score (held-out type vs known types), share of known-type cells kept
confident. Recall@50 of the store's kNN at the annotation ef against exact kNN.

Run: ``nice -n 10 .venv/bin/python benchmarks/bench_annotate.py`` (about 10 minutes on 2 cores;
``--store-dir`` keeps the 100k store between runs, ``--cli-cells 100000`` adds the CLI run).
Needs hnswlib for the SCimilarity baseline (``pip install hnswlib==0.8.0``, the ``bench``
extra); without it that row is skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import ontology  # noqa: E402
from benchmarks.eval.metrics import macro_f1, ontology_score  # noqa: E402
from celldata.simulate import simulate_atlas  # noqa: E402
from cellsearch.search import annotate as core  # noqa: E402
from cellsearch.search.query import DEFAULT_ANNOTATE_K  # noqa: E402

#: Held out of the reference (absent from it, present in the query): the first of these
#: that the query studies hold.
HELD_OUT_CHOICES = ("CL:0002306", "CL:0002063", "CL:0000182", "CL:0000186", "CL:0000451")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reference", type=int, default=100_000)
    p.add_argument("--queries", type=int, default=20_000)
    p.add_argument("--studies", type=int, default=40)
    p.add_argument("--k", type=int, default=DEFAULT_ANNOTATE_K, help="candidates (the product's)")
    p.add_argument("--ef", type=int, default=core.AnnotationConfig().ef)
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--reps", type=int, default=3, help="timed repetitions (medians reported)")
    p.add_argument("--store-dir", type=Path, default=None, help="reuse/keep the store here")
    p.add_argument("--cli-cells", type=int, default=0, help="also run the CLI on this many")
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- data


def split_atlas(args: argparse.Namespace) -> tuple[Any, Any, str]:
    """Reference and query from one simulated atlas, split by study (unseen query studies)."""
    total = int((args.reference + args.queries) * 1.15)
    atlas = simulate_atlas(total, args.studies, seed=0)
    studies = atlas.obs["study_id"].astype(str).to_numpy()
    sizes = atlas.obs["study_id"].value_counts()
    held: list[str] = []
    for study in sorted(sizes.index, key=str)[::-1]:  # the last studies, until enough cells
        held.append(str(study))
        if sizes[held].sum() >= args.queries:
            break
    in_query = np.isin(studies, held)
    rng = np.random.default_rng(0)
    q_idx = rng.permutation(np.flatnonzero(in_query))[: args.queries]
    true = atlas.obs["true_cell_type_ontology_term_id"].astype(str).to_numpy()
    in_q = set(true[q_idx])
    held_out = next((t for t in HELD_OUT_CHOICES if t in in_q), "")
    ref_pool = np.flatnonzero(~in_query & (true != held_out))
    r_idx = rng.permutation(ref_pool)[: args.reference]
    return atlas[np.sort(r_idx)].copy(), atlas[np.sort(q_idx)].copy(), held_out


def build_store(path: Path, ref: Any, vectors: np.ndarray) -> Any:
    from vectorstore import CellRecord, open_store

    store = open_store(path=path)
    if store.count() == ref.n_obs:
        return store
    anc: dict[str, list[str]] = {}

    def ancestors(term: str) -> list[str]:
        if term not in anc:
            anc[term] = sorted(ontology.ancestors(term))
        return anc[term]

    obs = ref.obs.astype(str)
    records = []
    for i, (cell, row) in enumerate(obs.iterrows()):
        payload = {
            "study_id": row["study_id"],
            "donor_id": row["donor_id"],
            "sample_id": row["sample_id"],
            "cell_type_id": row["cell_type_ontology_term_id"],
            "cell_type_ancestors": ancestors(row["cell_type_ontology_term_id"]),
            "tissue_id": row["tissue_ontology_term_id"],
            "tissue_ancestors": ancestors(row["tissue_ontology_term_id"]),
            "disease_id": row["disease_ontology_term_id"],
            "disease_ancestors": ancestors(row["disease_ontology_term_id"]),
            "assay": row["assay_ontology_term_id"],
            "model_version": "bench",
        }
        records.append(CellRecord(f"{row['study_id']}/d", str(cell), vectors[i], payload))
    for start in range(0, len(records), 20_000):
        store.upsert(records[start : start + 20_000])
    store.optimize()
    return store


# ----------------------------------------------------------------------------- baselines


def exact_knn(ref: np.ndarray, queries: np.ndarray, k: int, block: int = 512) -> tuple:
    """Exact cosine kNN by blocked matmul: (distances, indexes), nearest first."""
    dists = np.empty((len(queries), k), dtype=np.float32)
    idx = np.empty((len(queries), k), dtype=np.int64)
    for s in range(0, len(queries), block):
        sim = queries[s : s + block] @ ref.T
        part = np.argpartition(-sim, k, axis=1)[:, :k]
        top = np.take_along_axis(sim, part, axis=1)
        order = np.argsort(-top, axis=1)
        idx[s : s + block] = np.take_along_axis(part, order, axis=1)
        dists[s : s + block] = 1.0 - np.take_along_axis(top, order, axis=1)
    return dists, idx


def per_cell_vote(labels: np.ndarray, dists: np.ndarray, eps: float = 0.01) -> list[str]:
    """SCimilarity's way: per cell, a weighted majority of the neighbours' labels."""
    out = []
    for lab_row, d_row in zip(labels, dists, strict=True):
        weights: Counter[str] = Counter()
        for lab, d in zip(lab_row, d_row, strict=True):
            weights[lab] += 1.0 / (max(float(d), 0.0) + eps)
        out.append(weights.most_common(1)[0][0])
    return out


def legacy_vote(labels: np.ndarray, dists: np.ndarray) -> list[str]:
    """main's vote (before issue 18): winner share, else LCA of labels over 15% if it pools
    0.7 of the votes, however high in the ontology that ancestor sits."""
    closure: dict[str, frozenset[str]] = {}
    out = []
    for lab_row, d_row in zip(labels, dists, strict=True):
        weights: dict[str, float] = {}
        for lab, d in zip(lab_row, d_row, strict=True):
            weights[lab] = weights.get(lab, 0.0) + 1.0 / (max(float(d), 0.0) + 0.01)
            if lab not in closure:
                closure[lab] = frozenset(ontology.ancestors(lab))
        total = sum(weights.values())
        shares = {k: v / total for k, v in sorted(weights.items(), key=lambda kv: -kv[1])}
        best, best_share = next(iter(shares.items()))
        if best_share >= 0.7 or len(shares) == 1:
            out.append(best)
            continue
        competing = [lab for lab, s in shares.items() if s >= 0.15] or list(shares)[:2]
        if len(competing) < 2:
            competing = list(shares)[:2]
        common = ontology.lowest_common_ancestor(competing)
        pooled = sum(s for lab, s in shares.items() if common in closure[lab]) if common else 0
        out.append(common if common and pooled >= 0.7 else best)
    return out


def timed(fn: Callable[[], Any], reps: int) -> tuple[float, Any]:
    """Median seconds over ``reps`` runs and the last result."""
    times, result = [], None
    for _ in range(reps):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), result


def auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    scores = np.concatenate([pos, neg])
    ranks = np.argsort(np.argsort(scores)) + 1
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import encoder
    from cellsearch.search.engine import Annotator

    out: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    t0 = time.perf_counter()
    ref, query, held_out = split_atlas(args)
    print(f"atlas: reference {ref.n_obs} cells, query {query.n_obs} cells from unseen studies "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
    n_q = query.n_obs
    enc = encoder.load_default()
    ref_z = enc.embed(ref)
    t = time.perf_counter()
    query_z = enc.embed(query)
    embed_s = time.perf_counter() - t
    ref_labels = ref.obs["cell_type_ontology_term_id"].astype(str).to_numpy()
    true = query.obs["true_cell_type_ontology_term_id"].astype(str).to_numpy()
    known = true != held_out

    tmp = tempfile.TemporaryDirectory(prefix="bench-annotate-", dir="/dev/shm")
    store_dir = args.store_dir or Path(tmp.name) / "store"
    t = time.perf_counter()
    store = build_store(store_dir, ref, ref_z)
    print(f"store: {store.count()} cells ({time.perf_counter() - t:.0f} s)", flush=True)

    config = core.AnnotationConfig(k=args.k, ef=args.ef)
    annotator = Annotator(config)
    t = time.perf_counter()
    annotator.reference(store, None, config)
    calib_s = time.perf_counter() - t
    index = annotator.reference(store, None, config).index.index
    index_s = index.build_seconds if index is not None else None
    print(f"calibration, label space, kNN index: {calib_s:.1f} s (index {index_s} s)", flush=True)
    # the previous path: the store's kNN (float vectors, ef --ef) for every query
    store_only = Annotator(replace(config, index_max_cells=0))
    store_only.reference(store, None, replace(config, index_max_cells=0))

    # ---- recall@k of the store kNN (annotation's float-vector walk, and int8 codes)
    sample = query_z[:: max(1, len(query_z) // 1000)]
    _, ex_i = exact_knn(ref_z, sample, args.k)
    truth = [set(ref.obs_names[row]) for row in ex_i]
    recall = {}
    for ef, exact_vectors in ((64, False), (1024, False), (128, True), (args.ef, True)):
        ids, _ = store.search_ids(sample, args.k, None, ef=ef, exact_vectors=exact_vectors)
        found = [set(store.payload_values(list(row), ["cell_id"])["cell_id"]) for row in ids]
        key = f"ef {ef} {'float' if exact_vectors else 'int8'}"
        pairs = zip(found, truth, strict=True)
        recall[key] = float(np.mean([len(x & y) / args.k for x, y in pairs]))
    if index is not None:
        found_idx = index.search(sample, args.k).ids
        names = [set(store.payload_values(list(row), ["cell_id"])["cell_id"]) for row in found_idx]
        recall[f"in-memory index ef {config.index_ef}"] = float(
            np.mean([len(x & y) / args.k for x, y in zip(names, truth, strict=True)])
        )
    out["recall_at_k"] = recall
    print(f"recall@{args.k}: {recall}", flush=True)

    # ---- in-process: embed + annotate (whole query, one call)
    def in_process() -> Any:
        z = enc.embed(query)
        return annotator.annotate(store, z, args.k, None)

    inproc_s, inproc = timed(in_process, args.reps)
    knn_vote_s, _ = timed(lambda: annotator.annotate(store, query_z, args.k, None), args.reps)
    store_s, store_ann = timed(lambda: store_only.annotate(store, query_z, args.k, None), args.reps)
    fast = Annotator(core.AnnotationConfig(k=args.k, ef=64, exact_vectors=False))
    fast.annotate(store, query_z[:10], args.k, None)  # calibrate, untimed
    fast_s, fast_ann = timed(lambda: fast.annotate(store, query_z, args.k, None), args.reps)
    print(
        f"in-process: {n_q / inproc_s:,.0f} cells/s, without embedding {n_q / knn_vote_s:,.0f}",
        flush=True,
    )

    # ---- SCimilarity's way and exact kNN, with the per-cell vote
    rows: dict[str, Any] = {}
    try:
        import hnswlib

        t = time.perf_counter()
        index = hnswlib.Index(space="cosine", dim=ref_z.shape[1])
        index.init_index(max_elements=len(ref_z), M=32, ef_construction=200)
        index.add_items(ref_z, num_threads=2)
        build_s = time.perf_counter() - t
        index.set_ef(max(args.ef, args.k))

        def scim() -> list[str]:
            ids, d = index.knn_query(query_z, k=args.k, num_threads=2)
            return per_cell_vote(ref_labels[ids], d)

        scim_s, scim_labels = timed(scim, args.reps)
        rows["scimilarity"] = (scim_s, scim_labels, build_s)
    except ImportError:
        print("hnswlib not installed: the SCimilarity row is skipped", flush=True)

    def exact() -> tuple:
        d, i = exact_knn(ref_z, query_z, args.k)
        return per_cell_vote(ref_labels[i], d), d, i

    exact_s, (exact_labels, exact_d, exact_i) = timed(exact, 1)

    # ---- quality: new vote vs old vote on the same (store) neighbours
    ref_entry = annotator.reference(store, None, config)
    space = ref_entry.space
    voters = core.reference_filter(config, store=store)
    ids, nb_d32 = store.search_ids(query_z, args.k, voters, ef=args.ef, exact_vectors=True)
    nb_codes, nb_studies = ref_entry.labels.codes(ids)
    nb_labels = np.asarray(space.labels, dtype=object)[np.maximum(nb_codes, 0)]
    nb_dists = nb_d32.astype(np.float64)
    t = time.perf_counter()
    old = legacy_vote(nb_labels, nb_dists)
    old_vote_s = time.perf_counter() - t
    t = time.perf_counter()
    voting = core.voting_codes(nb_codes, nb_dists, nb_studies, config)
    v = core.vote(voting, nb_dists, space, config)
    new_vote_s = time.perf_counter() - t
    new = [space.terms[i] for i in v.term]

    def anc(term: str) -> frozenset[str]:
        return ontology.ancestors(term)

    above: set[str] = set()
    for f in core.default_floor():
        above |= set(ontology.ancestors(f, include_self=False))
    cd8 = true == "CL:0000625"
    quality = {}

    def quality_of(labels: list[str]) -> dict[str, Any]:
        lab = np.asarray(labels, dtype=object)
        return {
            "macro_f1": macro_f1(list(true[known]), list(lab[known])),
            "ontology_score": ontology_score(list(true[known]), list(lab[known]), anc),
            "above_floor": int(np.isin(lab, list(above)).sum()),
            "cd8_called_t_cell": int((lab[cd8] == "CL:0000084").sum()),
            "cd8_cells": int(cd8.sum()),
        }

    quality = {"old vote": quality_of(old), "new vote": quality_of(new)}
    new_ann = inproc
    exact_new = core.vote(
        space.codes(ref_labels[exact_i].ravel().tolist()).reshape(exact_i.shape),
        exact_d,
        space,
        config,
    )
    agree_knn = float(
        np.mean(np.asarray(new) == np.asarray([space.terms[i] for i in exact_new.term]))
    )

    # ---- unknown flag: held-out type vs known types from unseen studies
    dist = np.asarray(new_ann.distance)
    unknown = np.asarray(new_ann.is_unknown)
    cal = annotator.reference(store, None, config).calibration
    by_quantile = {}
    for qt in (0.8, 0.9, 0.95, 0.99):
        thr = cal.threshold(qt)
        by_quantile[str(qt)] = {
            "known_confident": float(np.mean(dist[known] <= thr)),
            "held_out_flagged": float(np.mean(dist[~known] > thr)) if (~known).any() else None,
        }
    flag = {
        "by_quantile": by_quantile,
        "held_out_type": held_out,
        "held_out_cells": int((~known).sum()),
        "auroc_distance": auroc(dist[~known], dist[known]) if (~known).any() else float("nan"),
        "known_confident": float(1 - unknown[known].mean()),
        "held_out_flagged": float(unknown[~known].mean()) if (~known).any() else float("nan"),
        "calibration": "cross-study"
        if annotator.reference(store, None, config).calibration.cross_study
        else "loo",
    }

    n = query.n_obs
    speed = {
        "in-process (embed + annotate)": n / inproc_s,
        "in-process (annotate embeddings)": n / knn_vote_s,
        "in-process, store kNN, no index (embeddings)": n / store_s,
        "in-process, ef 64 on int8 codes (embeddings)": n / fast_s,
        "exact numpy kNN + per-cell vote": n / exact_s,
    }
    if "scimilarity" in rows:
        speed["scimilarity (hnswlib + per-cell vote)"] = n / rows["scimilarity"][0]
    out.update(speed=speed, quality=quality, unknown=flag)
    out["timings_s"] = {
        "embed_query": embed_s,
        "calibration_and_label_space": calib_s,
        "old_vote_python": old_vote_s,
        "new_vote_numpy": new_vote_s,
        "hnswlib_build": rows["scimilarity"][2] if "scimilarity" in rows else None,
        "annotation_index_build": index_s,
    }
    out["agreement"] = {
        "index_vs_store_knn": float(
            np.mean(np.asarray(store_ann.label) == np.asarray(new_ann.label))
        ),
        "store_knn_vs_exact_knn_new_vote": agree_knn,
        "ef64_int8_vs_default": float(
            np.mean(np.asarray(fast_ann.label) == np.asarray(new_ann.label))
        ),
    }
    if "scimilarity" in rows:
        out["agreement"]["scimilarity_vs_exact_per_cell_vote"] = float(
            np.mean(np.asarray(rows["scimilarity"][1]) == np.asarray(exact_labels))
        )
        out["agreement"]["new_vote_vs_scimilarity_vote"] = float(
            np.mean(np.asarray(new) == np.asarray(rows["scimilarity"][1]))
        )
    # ---- gRPC, end to end (counts) and with embeddings: the server in its own process, as
    # deployed (client and server in one interpreter would share one GIL)
    store.close()
    grpc = time_grpc(args, store_dir, query, query_z, ref)
    speed["grpc (counts, end to end)"] = n / grpc["counts_s"]
    speed["grpc (embeddings)"] = n / grpc["embeddings_s"]
    quality["grpc+unknown"] = quality_of(grpc["labels"])  # "unknown" scores 0
    out["agreement"]["grpc_vs_in_process"] = float(
        np.mean(np.asarray(grpc["labels"]) == np.asarray(new_ann.label))
    )
    if "cli" in grpc:
        out["cli"] = grpc["cli"]
    report(out, args)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str))
    tmp.cleanup()
    return out


def _serve(store_dir: str, ports: Any, stop: Any) -> None:
    """The server process: the store, the default encoder, one gRPC server."""
    import encoder
    from cellsearch.platform.jobs import MemoryJobStore
    from cellsearch.platform.settings import Settings
    from services.search.server import build_server
    from vectorstore import open_store

    store = open_store(path=Path(store_dir))
    settings = Settings(
        store_path=Path(store_dir),
        grpc_address="127.0.0.1:0",
        max_query_cells=20_000,
        grpc_workers=4,
    )
    server, port = build_server(
        settings,
        store=store,
        encoder=encoder.load_default(),
        jobs=MemoryJobStore(),
        submit=lambda _j: None,
    )
    ports.put(port)
    stop.wait()
    server.stop(grace=None).wait()
    store.close()


def time_grpc(
    args: argparse.Namespace, store_dir: Path, query: Any, query_z: np.ndarray, ref: Any
) -> dict[str, Any]:
    import multiprocessing as mp

    from cellsearch.client import CellSearchClient

    ctx = mp.get_context("spawn")
    ports, stop = ctx.Queue(), ctx.Event()
    proc = ctx.Process(target=_serve, args=(str(store_dir), ports, stop), daemon=True)
    proc.start()
    out: dict[str, Any] = {}
    try:
        port = ports.get(timeout=600)
        with CellSearchClient(f"127.0.0.1:{port}", timeout=600) as client:
            client.annotate(query_z[:10], k=args.k)  # the server calibrates once, untimed
            out["counts_s"], ann = timed(
                lambda: client.annotate(query, k=args.k, batch_size=args.batch_size), args.reps
            )
            out["labels"] = list(ann["cell_type_id"])
            out["embeddings_s"], _ = timed(
                lambda: client.annotate(query_z, k=args.k, batch_size=args.batch_size), args.reps
            )
        if args.cli_cells:
            out["cli"] = run_cli(port, ref, args.cli_cells, args.batch_size)
    finally:
        stop.set()
        proc.join(timeout=120)
    return out


def run_cli(port: int, ref: Any, n: int, batch_size: int) -> dict[str, Any]:
    """``cellsearch annotate`` on ``n`` cells with its defaults (progress bar on stderr)."""
    import anndata as ad

    from cellsearch.app.cli import main as cli

    with tempfile.TemporaryDirectory(dir="/dev/shm") as tmp:
        reps = -(-n // ref.n_obs)
        cells = ad.concat([ref] * reps)[:n].copy()
        cells.obs_names = [f"q{i}" for i in range(n)]
        path, out = Path(tmp) / "query.h5ad", Path(tmp) / "annotated.h5ad"
        cells.write_h5ad(path)
        t = time.perf_counter()
        rc = cli(["--address", f"127.0.0.1:{port}", "annotate", str(path), "-o", str(out)])
        seconds = time.perf_counter() - t
        written = ad.read_h5ad(out)
        labelled = int((written.obs["cellsearch_cell_type_id"].astype(str) != "").sum())
    return {
        "rc": rc,
        "cells": n,
        "written": labelled,
        "seconds": seconds,
        "cells_per_s": n / seconds,
    }


def report(out: dict[str, Any], args: argparse.Namespace) -> None:
    speed = out["speed"]
    base = speed.get("scimilarity (hnswlib + per-cell vote)")
    print(f"\nannotation of {args.queries} query cells vs a {args.reference}-cell reference "
          f"(k={args.k}, ef={args.ef}, median of {args.reps})")  # fmt: skip
    for name, cps in speed.items():
        ratio = f"  x{cps / base:.2f} vs scimilarity" if base else ""
        print(f"  {name:<42} {cps:>9,.0f} cells/s{ratio}")
    print(f"  goal: >= 5,000 cells/s through gRPC on 2 cores: "
          f"{'met' if speed['grpc (counts, end to end)'] >= 5000 else 'NOT met'}")  # fmt: skip
    print(
        "recall@k of the store kNN: "
        + ", ".join(f"{k}: {v:.3f}" for k, v in out["recall_at_k"].items())
    )
    print("agreement: " + ", ".join(f"{k} {v:.3f}" for k, v in out["agreement"].items()))
    print(
        "timings (s): "
        + ", ".join(f"{k} {v:.2f}" for k, v in out["timings_s"].items() if v is not None)
    )
    print("quality on the query's true types (known types only):")
    for name, q in out["quality"].items():
        print(
            f"  {name:<12} macro-F1 {q['macro_f1']:.3f}  ontology score "
            f"{q['ontology_score']:.3f}  above floor {q['above_floor']}  CD8 called 'T cell' "
            f"{q['cd8_called_t_cell']}/{q['cd8_cells']}"
        )
    f = out["unknown"]
    print(f"unknown flag ({f['calibration']}): AUROC of distance {f['auroc_distance']:.3f} for "
          f"{f['held_out_cells']} held-out {f['held_out_type']} cells; known types kept confident "
          f"{f['known_confident']:.3f}, held-out flagged {f['held_out_flagged']:.3f}")  # fmt: skip
    for qt, row in f["by_quantile"].items():
        print(f"  threshold at the {qt} quantile: known confident {row['known_confident']:.3f}, "
              f"held-out flagged {row['held_out_flagged']}")  # fmt: skip
    if "cli" in out:
        c = out["cli"]
        print(f"cli: rc {c['rc']}, {c['written']}/{c['cells']} cells written, {c['seconds']:.0f} s "
              f"({c['cells_per_s']:,.0f} cells/s)")  # fmt: skip


if __name__ == "__main__":
    main()
