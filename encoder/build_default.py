"""Rebuild the committed default model: ``python -m encoder.build_default [--out DIR]``.

Trained on the simulated atlas (celldata.simulate, seed 0) plus the 700 real
PBMCs bundled with scanpy (pbmc68k_reduced). pbmc68k only ships log1p(CP10k)
values, so ``expm1`` turns them back into per-10k pseudo-counts, which the
model's own normalisation maps to the same values again. Small on purpose
(2,000-gene panel, two hidden layers of 256): it builds in a few minutes on
two CPU cores and weighs a few MB, so tests and the demo never train.
Seeded and deterministic: the same command gives the same ``model_version``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from encoder.config import EncoderConfig, TrainConfig
from encoder.model import DEFAULT_MODEL_DIR, CellEncoder

N_GENES = 2000
N_CELLS = 8000
N_STUDIES = 10
SEED = 0
HIDDEN = (256, 256)


def pbmc_as_counts(genes: list[str]) -> ad.AnnData:
    """The bundled real PBMCs as pseudo-counts aligned to ``genes``."""
    from celldata.bundled import load_pbmc68k_reduced
    from celldata.genes import align_genes

    pbmc = load_pbmc68k_reduced()
    raw = pbmc.raw.to_adata()
    x = sp.csr_matrix(raw.X, dtype=np.float32)
    x.data = np.expm1(x.data)
    aligned = align_genes(list(raw.var_names), genes, min_overlap=0.2).apply(x)
    obs = pbmc.obs[["cell_type_ontology_term_id", "study_id"]].astype(str)
    return ad.AnnData(X=aligned, obs=obs, var=pd.DataFrame(index=genes))


def training_data(n_cells: int = N_CELLS, n_studies: int = N_STUDIES) -> ad.AnnData:
    """Simulated atlas + real PBMCs on the atlas gene panel."""
    from celldata.simulate import atlas_genes, simulate_atlas

    genes = atlas_genes(N_GENES)
    atlas = simulate_atlas(n_cells, n_studies, seed=SEED)
    atlas = atlas[:, genes].copy()
    atlas.obs = atlas.obs[["cell_type_ontology_term_id", "study_id"]].astype(str)
    both = ad.concat([atlas, pbmc_as_counts(genes)], join="outer", index_unique="-")
    both.X = sp.csr_matrix(both.X, dtype=np.float32)
    return both


def default_train_config(**overrides: object) -> TrainConfig:
    """The recipe of the committed model (triplet weight raised for a small run)."""
    base: dict[str, object] = {
        "epochs": 8,
        "batch_size": 256,
        "steps_per_epoch": 30,
        "lr": 2e-3,
        "triplet_weight": 0.5,
        "recon_weight": 0.5,
        "cells_per_type": 8,
        "val_fraction_studies": 0.2,
        "knn_k": 50,
        "patience": 3,
        "seed": SEED,
        "device": "cpu",
    }
    base.update(overrides)
    return TrainConfig(**base)  # type: ignore[arg-type]


def build(out: Path, *, progress: bool = True) -> CellEncoder:
    """Train the default model and save it to ``out``."""
    data = training_data()
    enc = CellEncoder.train(
        data,
        config=default_train_config(progress=progress),
        encoder_config=EncoderConfig(n_genes=data.n_vars, hidden_dims=HIDDEN),
    )
    enc.training["recipe"] = "python -m encoder.build_default"
    enc.save(out)
    return enc


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    enc = build(args.out, progress=not args.quiet)
    last = enc.training["history"][-1] if enc.training["history"] else {}
    print(f"saved {enc!r} to {args.out}; last epoch {last}")


if __name__ == "__main__":
    main()
