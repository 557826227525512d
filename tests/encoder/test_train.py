"""Training: learns, is seeded, resumes, writes a loadable best checkpoint."""

from __future__ import annotations

import pytest
import torch
from training_kit import ENC, RELATED, TYPES, small_config, toy_atlas

from encoder import CellEncoder


@pytest.mark.slow
def test_training_is_seeded_and_learns(tmp_path):
    adata = toy_atlas()
    a = CellEncoder.train(adata, config=small_config(), encoder_config=ENC, related=RELATED)
    b = CellEncoder.train(adata, config=small_config(), encoder_config=ENC, related=RELATED)
    assert a.model_version == b.model_version
    history = a.training["history"]
    assert len(history) == 3
    assert history[-1]["val_macro_f1"] > 0.8  # marker genes make the types separable
    assert a.labels == sorted(TYPES)
    z = a.embed(adata)
    assert z.shape == (adata.n_obs, 32)


@pytest.mark.slow
def test_resume_continues_where_it_stopped(tmp_path):
    adata = toy_atlas()
    full = CellEncoder.train(
        adata, config=small_config(epochs=3), encoder_config=ENC, related=RELATED
    )
    ckpt = tmp_path / "run"
    CellEncoder.train(
        adata,
        config=small_config(epochs=3, max_epochs_per_run=2),
        encoder_config=ENC,
        related=RELATED,
        checkpoint_dir=ckpt,
    )
    resumed = CellEncoder.train(
        adata,
        config=small_config(epochs=3),
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
            toy_atlas(),
            config=small_config(val_studies=("nope",)),
            encoder_config=ENC,
            related=RELATED,
        )


def test_ontology_relations_are_used_by_default():
    from encoder.train import related_types

    rel = related_types(["CL:0000084", "CL:0000624", "CL:0000236"])  # T cell, CD4 T cell, B cell
    assert rel[0, 1] and rel[1, 0]
    assert not rel[0, 2] and not rel[1, 2]
