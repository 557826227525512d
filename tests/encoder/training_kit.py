"""A toy multi-study atlas and a small training config, shared by the training tests."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from encoder import EncoderConfig, TrainConfig

TYPES = ["CL:0000236", "CL:0000576", "CL:0000623"]  # B cell, monocyte, NK cell


def toy_atlas(n_per: int = 40, n_genes: int = 120, seed: int = 0) -> ad.AnnData:
    """3 cell types x 4 studies; each type has its own marker genes, each study a batch shift."""
    rng = np.random.default_rng(seed)
    base = rng.gamma(1.0, 1.0, n_genes)
    rows, labels, studies = [], [], []
    for s in range(4):
        shift = rng.gamma(4.0, 0.25, n_genes)
        for t, term in enumerate(TYPES):
            mean = base * shift
            mean[t * 20 : (t + 1) * 20] *= 8.0
            rows.append(rng.poisson(mean, size=(n_per, n_genes)))
            labels += [term] * n_per
            studies += [f"s{s}"] * n_per
    obs = pd.DataFrame({"cell_type_ontology_term_id": labels, "study_id": studies})
    obs.index = obs.index.astype(str)
    x = sp.csr_matrix(np.vstack(rows).astype(np.float32))
    return ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=[f"G{i}" for i in range(n_genes)]))


def small_config(**kw) -> TrainConfig:
    base = {
        "epochs": 3,
        "batch_size": 48,
        "cells_per_type": 8,
        "steps_per_epoch": 4,
        "val_studies": ("s3",),
        "knn_k": 10,
        "progress": False,
        "triplet_weight": 0.5,
        "recon_weight": 0.5,
        "patience": 10,
    }
    base.update(kw)
    return TrainConfig(**base)


ENC = EncoderConfig(n_genes=120, hidden_dims=(32,), latent_dim=32)
RELATED = np.eye(3, dtype=bool)
