"""Annotation quality: encoder vs PCA+kNN, and the loss ablation (recon / triplet / recipe).

Reference: the simulated atlas (seed 0). Queries: (a) the studies of a second atlas
(seed 1; unseen studies, same cell types) and (b) the 700 real PBMCs of pbmc68k_reduced
(real data, never used to train the ablation models). Each query cell is annotated by a
k=50 nearest-neighbour vote over the reference; the baseline is PCA (50 components, fitted
on the reference) + the same kNN on the same log-normalised data. Also scores the
committed default model (which did see the PBMCs in training: marked "seen").

    python benchmarks/bench_encoder_quality.py --cells 6000 --epochs 6 --steps 30
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from encoder import CellEncoder, EncoderConfig, load_default
from encoder.build_default import N_GENES, default_train_config, pbmc_as_counts
from encoder.data import log_normalize
from encoder.metrics import accuracy, knn_predict, macro_f1


def pca_embed(ref: np.ndarray, queries: list[np.ndarray], n_comp: int = 50):
    mean = ref.mean(axis=0)
    _, _, vt = np.linalg.svd(ref - mean, full_matrices=False)
    comps = vt[:n_comp].T
    return (ref - mean) @ comps, [(q - mean) @ comps for q in queries]


def score(ref_z, ref_y, query_z, query_y, k):
    pred = knn_predict(ref_z, ref_y, query_z, k=k)
    return accuracy(query_y, pred), macro_f1(query_y, pred)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=6000)
    parser.add_argument("--studies", type=int, default=8)
    parser.add_argument("--query-cells", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from celldata.simulate import atlas_genes, simulate_atlas

    genes = atlas_genes(N_GENES)
    ref = simulate_atlas(args.cells, args.studies, seed=0)[:, genes].copy()
    query = simulate_atlas(args.query_cells, max(2, args.studies // 2), seed=1)[:, genes].copy()
    pbmc = pbmc_as_counts(genes)
    key = "cell_type_ontology_term_id"
    ref_y = ref.obs[key].astype(str).to_numpy()
    sets = {
        "held-out simulated studies": (query.X, query.obs[key].astype(str).to_numpy()),
        "real PBMC (pbmc68k)": (pbmc.X, pbmc.obs[key].astype(str).to_numpy()),
    }
    print(
        f"reference: {ref.n_obs} simulated cells, {args.studies} studies; queries: "
        f"{query.n_obs} cells of unseen studies, {pbmc.n_obs} real PBMCs; k={args.k}; "
        f"threads {args.threads} (shared machine)"
    )
    rows: list[tuple[str, str, float, float]] = []
    ref_log = log_normalize(ref.X).toarray()
    ref_p, query_p = pca_embed(ref_log, [log_normalize(x).toarray() for x, _ in sets.values()])
    for (name, (_, y)), qz in zip(sets.items(), query_p, strict=True):
        rows.append(("PCA(50)+kNN (baseline)", name, *score(ref_p, ref_y, qz, y, args.k)))

    variants: dict[str, dict[str, object]] = {
        "shipped recipe": {},
        "recon only": {"triplet_weight": 0.0, "proxy_weight": 0.0, "recon_weight": 1.0},
        "triplet only": {"proxy_weight": 0.0, "recon_weight": 0.0},
        "SCimilarity weights (0.001/0.999)": {
            "triplet_weight": 0.001,
            "recon_weight": 0.999,
            "margin": 0.05,
            "proxy_weight": 0.0,
        },
    }
    for label, changes in variants.items():
        start = time.time()
        cfg = default_train_config(
            epochs=args.epochs, steps_per_epoch=args.steps, progress=False, **changes
        )
        enc = CellEncoder.train(
            ref,
            config=cfg,
            encoder_config=EncoderConfig(n_genes=len(genes), hidden_dims=(args.hidden,) * 2),
        )
        ref_z = enc.embed(ref)
        for name, (x, y) in sets.items():
            qz = enc.embed(x, gene_names=genes)
            rows.append((f"encoder: {label}", name, *score(ref_z, ref_y, qz, y, args.k)))
        print(f"  trained {label} in {time.time() - start:.0f}s")

    default = load_default()
    ref_z = default.embed(ref)
    for name, (x, y) in sets.items():
        tag = " (seen)" if "PBMC" in name else ""
        qz = default.embed(x, gene_names=genes)
        rows.append(("committed default model" + tag, name, *score(ref_z, ref_y, qz, y, args.k)))

    print(f"\n{'model':<44}{'query':<30}{'accuracy':>10}{'macro-F1':>10}")
    for model, name, acc, f1 in sorted(rows, key=lambda r: (r[1], r[0])):
        print(f"{model:<44}{name:<30}{acc:>10.3f}{f1:>10.3f}")


if __name__ == "__main__":
    main()
