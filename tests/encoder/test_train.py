"""Training: learns, is seeded, resumes, writes a loadable best checkpoint."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from encoder import CellEncoder, EncoderConfig, TrainConfig

TYPES = ["CL:0000236", "CL:0000576", "CL:0000623"]  # B cell, monocyte, NK cell


def _toy_atlas(n_per: int = 40, n_genes: int = 120, seed: int = 0) -> ad.AnnData:
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


def _config(**kw) -> TrainConfig:
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


@pytest.mark.slow
def test_training_is_seeded_and_learns(tmp_path):
    adata = _toy_atlas()
    a = CellEncoder.train(adata, config=_config(), encoder_config=ENC, related=RELATED)
    b = CellEncoder.train(adata, config=_config(), encoder_config=ENC, related=RELATED)
    assert a.model_version == b.model_version
    history = a.training["history"]
    assert len(history) == 3
    assert history[-1]["val_macro_f1"] > 0.8  # marker genes make the types separable
    assert a.labels == sorted(TYPES)
    z = a.embed(adata)
    assert z.shape == (adata.n_obs, 32)


@pytest.mark.slow
def test_resume_continues_where_it_stopped(tmp_path):
    adata = _toy_atlas()
    full = CellEncoder.train(adata, config=_config(epochs=3), encoder_config=ENC, related=RELATED)
    ckpt = tmp_path / "run"
    CellEncoder.train(
        adata,
        config=_config(epochs=3, max_epochs_per_run=2),
        encoder_config=ENC,
        related=RELATED,
        checkpoint_dir=ckpt,
    )
    resumed = CellEncoder.train(
        adata,
        config=_config(epochs=3),
        encoder_config=ENC,
        related=RELATED,
        checkpoint_dir=ckpt,
        resume=True,
    )
    assert len(resumed.training["history"]) == 3
    for key, value in full.module.state_dict().items():
        torch.testing.assert_close(resumed.module.state_dict()[key], value, msg=key)
    loaded = CellEncoder.load(ckpt / "best")
    assert loaded.model_version == resumed.model_version


def test_unknown_validation_study_is_refused():
    with pytest.raises(ValueError, match="val_studies"):
        CellEncoder.train(
            _toy_atlas(), config=_config(val_studies=("nope",)), encoder_config=ENC, related=RELATED
        )


def test_ontology_relations_are_used_by_default():
    from encoder.train import related_types

    rel = related_types(["CL:0000084", "CL:0000624", "CL:0000236"])  # T cell, CD4 T cell, B cell
    assert rel[0, 1] and rel[1, 0]
    assert not rel[0, 2] and not rel[1, 2]
