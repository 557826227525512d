"""The training recipe's parts: augmentation, label proxies, the time budget, the refit."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from training_kit import RELATED, small_config, toy_atlas

from encoder import CellEncoder, EncoderConfig, TrainConfig
from encoder.augment import NO_AUGMENTATION, AugmentConfig, augment_batch
from encoder.losses import LabelProxies
from encoder.train import CosineSchedule, TrainingData, label_contexts, label_descends

ENC = EncoderConfig(n_genes=120, hidden_dims=(32,), latent_dim=32)


def _lognorm_batch(n_cells: int = 12, n_genes: int = 40, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    counts = torch.poisson(torch.rand(n_cells, n_genes, generator=gen) * 20, generator=gen)
    return torch.log1p(counts / counts.sum(dim=1, keepdim=True) * 1e4)


def test_augmentation_keeps_cells_normalised_and_shifts_studies_together():
    x = _lognorm_batch()
    studies = torch.tensor([0] * 6 + [1] * 6)
    config = AugmentConfig(p=1.0, depth_range=(1.0, 1.0), ambient_max=0.0, panel_dropout_max=0.0)
    y = augment_batch(x, studies, config, target_sum=1e4, generator=torch.Generator())
    assert torch.allclose(torch.expm1(y).sum(dim=1), torch.full((12,), 1e4), rtol=1e-4)
    assert not torch.allclose(y, x)
    # Without depth or ambient, a cell's change is its study's gene factors, up to a per-cell
    # normalisation constant: two cells of one study share their log-ratio profile.
    ratio = torch.log(torch.expm1(y) / torch.expm1(x).clamp_min(1e-12))
    expressed = (x[0] > 0) & (x[1] > 0) & (x[6] > 0)
    same = ratio[0][expressed] - ratio[1][expressed]
    other = ratio[0][expressed] - ratio[6][expressed]
    assert same.std() < 1e-3 < other.std()


def test_augmentation_is_off_when_asked_and_reproducible():
    x = _lognorm_batch()
    studies = torch.zeros(12, dtype=torch.long)
    off = augment_batch(x, studies, NO_AUGMENTATION, target_sum=1e4, generator=torch.Generator())
    assert off is x
    config = AugmentConfig(p=1.0)
    a = augment_batch(
        x, studies, config, target_sum=1e4, generator=torch.Generator().manual_seed(3)
    )
    b = augment_batch(
        x, studies, config, target_sum=1e4, generator=torch.Generator().manual_seed(3)
    )
    assert torch.equal(a, b)
    assert (a == 0).float().mean() > (x == 0).float().mean()  # thinning and panels add zeros


def test_proxies_accept_any_descendant_of_a_coarse_label():
    # T cell (coarse), CD4 T cell, CD8 T cell, B cell
    vocab = ["CL:0000084", "CL:0000624", "CL:0000625", "CL:0000236"]
    compatible = torch.from_numpy(label_descends(vocab))
    assert compatible[0].tolist() == [True, True, True, False]
    assert compatible[1].tolist() == [False, True, False, False]
    proxies = LabelProxies(compatible, latent_dim=8, scale=16.0)
    with torch.no_grad():
        proxies.proxies.copy_(torch.eye(4, 8))
    at_cd4 = torch.eye(4, 8)[1:2]  # a unit vector on the CD4 proxy
    coarse = proxies(at_cd4, torch.tensor([0]))  # "T cell" sitting at the CD4 proxy: fine
    fine_wrong = proxies(at_cd4, torch.tensor([2]))  # "CD8" sitting at the CD4 proxy: wrong
    b_cell = proxies(at_cd4, torch.tensor([3]))
    assert coarse < 0.01
    assert fine_wrong > 5 and b_cell > 5


EPITHELIAL, AT2, FIBROBLAST = "CL:0000066", "CL:0002063", "CL:0000057"
MONOCYTE, CD14_MONOCYTE = "CL:0000576", "CL:0001054"
KIDNEY, LUNG = "UBERON:0002113", "UBERON:0002048"


def _labelled(cells: list[tuple[str, str]]) -> TrainingData:
    """Training data of the given (label, tissue) cells (expression is irrelevant here)."""
    labels, tissues = zip(*cells, strict=True)
    label_vocab, label_codes = np.unique(labels, return_inverse=True)
    tissue_vocab, tissue_codes = np.unique(tissues, return_inverse=True)
    return TrainingData(
        x=None,  # type: ignore[arg-type]
        labels=label_codes,
        studies=np.zeros(len(cells), dtype=np.int64),
        label_vocab=list(label_vocab),
        study_vocab=["s"],
        genes=[],
        tissues=tissue_codes,
        tissue_vocab=list(tissue_vocab),
    )


def test_a_coarse_label_stands_only_for_types_its_tissue_holds():
    """A kidney study's "epithelial cell" may not settle on the lung-only AT2 proxy; a lung
    study's may; a cell whose tissue is not given keeps every descendant."""
    td = _labelled(
        [(EPITHELIAL, KIDNEY), (EPITHELIAL, LUNG), (AT2, LUNG), (FIBROBLAST, KIDNEY),
         (EPITHELIAL, "")]
    )  # fmt: skip
    context, compatible = label_contexts(td, label_descends(td.label_vocab))
    at2 = td.label_vocab.index(AT2)
    allowed = {
        (td.label_vocab[td.labels[i]], td.tissue_vocab[td.tissues[i]]): compatible[context[i]]
        for i in range(len(td.labels))
    }
    assert not allowed[(EPITHELIAL, KIDNEY)][at2]
    assert allowed[(EPITHELIAL, LUNG)][at2] and allowed[(EPITHELIAL, "")][at2]
    assert allowed[(AT2, LUNG)].tolist() == [lab == AT2 for lab in td.label_vocab]
    for (label, _), row in allowed.items():  # a cell may always sit at its own label
        assert row[td.label_vocab.index(label)]
    assert len(set(context.tolist())) == len(td.labels)  # five distinct (label, tissue) pairs


def test_an_immune_label_keeps_its_descendants_in_every_tissue():
    """Monocytes circulate: a lung study's "monocyte" may be the CD14 monocyte that only blood
    studies label, so tissue does not narrow hematopoietic labels."""
    blood = "UBERON:0000178"
    td = _labelled([(MONOCYTE, LUNG), (CD14_MONOCYTE, blood)])
    context, compatible = label_contexts(td, label_descends(td.label_vocab))
    lung_monocyte = compatible[context[0]]
    assert lung_monocyte[td.label_vocab.index(CD14_MONOCYTE)]


def test_without_tissues_a_coarse_label_keeps_every_descendant():
    td = _labelled([(EPITHELIAL, KIDNEY), (AT2, LUNG)])
    td.tissues = td.tissue_vocab = None
    descends = label_descends(td.label_vocab)
    context, compatible = label_contexts(td, descends)
    assert np.array_equal(context, td.labels) and np.array_equal(compatible, descends)


def test_free_text_labels_only_descend_from_themselves():
    assert np.array_equal(label_descends(["alpha", "beta"]), np.eye(2, dtype=bool))


def test_schedule_replan_anneals_to_zero_by_the_new_end():
    schedule = CosineSchedule(total=100, warmup=0)
    assert schedule(50) == pytest.approx(0.5)
    schedule.replan(50)
    assert schedule(50) == pytest.approx(0.0)
    assert schedule(25) == pytest.approx(0.5)


@pytest.mark.slow
def test_time_budget_shortens_the_plan():
    adata = toy_atlas()
    started = time.perf_counter()
    enc = CellEncoder.train(
        adata,
        config=small_config(epochs=400, steps_per_epoch=4, max_minutes=0.1, refit=False),
        encoder_config=ENC,
        related=RELATED,
    )
    assert time.perf_counter() - started < 30
    assert 1 <= len(enc.training["history"]) < 400


@pytest.mark.slow
def test_refit_trains_the_shipped_weights_on_every_study():
    adata = toy_atlas()
    kwargs = {"encoder_config": ENC, "related": RELATED}
    selected = CellEncoder.train(
        adata, config=small_config(refit=False, proxy_weight=1.0), **kwargs
    )
    refit = CellEncoder.train(adata, config=small_config(refit=True, proxy_weight=1.0), **kwargs)
    best = selected.training["best_epoch"]
    assert refit.training["refit_epochs"] == best >= 1
    assert refit.training["best_score"] == selected.training["best_score"]
    assert refit.model_version != selected.model_version
    assert selected.training["refit_epochs"] == 0


def test_train_config_round_trips_with_its_augmentation():
    config = TrainConfig(augment=AugmentConfig(p=0.5, depth_range=(0.3, 0.9)))
    again = TrainConfig.from_dict(config.to_dict())
    assert again.augment == config.augment


def test_one_free_text_label_keeps_the_ontology_for_the_others():
    d = label_descends(["CL:0000084", "CL:0000624", "my own label"])
    assert d[0, 1] and not d[1, 0]
    assert d[2].tolist() == [False, False, True]


@pytest.mark.slow
def test_unknown_cells_are_left_out_of_training():
    adata = toy_atlas()
    adata.obs["cell_type_ontology_term_id"] = adata.obs["cell_type_ontology_term_id"].astype(str)
    adata.obs.iloc[:30, adata.obs.columns.get_loc("cell_type_ontology_term_id")] = "unknown"
    enc = CellEncoder.train(adata, config=small_config(epochs=1), encoder_config=ENC)
    assert "unknown" not in enc.labels
    assert enc.training["n_train_cells"] + enc.training["n_val_cells"] == adata.n_obs - 30


@pytest.mark.slow
def test_training_records_how_far_unseen_studies_sit():
    enc = CellEncoder.train(
        toy_atlas(), config=small_config(epochs=2), encoder_config=ENC, related=RELATED
    )
    held_out = enc.training["held_out_distances"]
    assert held_out["neighbours"] == 5
    q = np.asarray(held_out["quantiles"])
    assert len(q) == 201 and np.all(np.diff(q) >= 0) and 0 <= q[0] <= q[-1] <= 2


def test_held_out_score_credits_a_finer_type_of_a_coarse_label():
    """A held-out study that says "monocyte" is not contradicted by a CD14 monocyte call, but
    is by a B cell; a "CD14 monocyte" cell called just "monocyte" stays a miss."""
    from encoder.metrics import credit_refinements, macro_f1

    vocab = [MONOCYTE, CD14_MONOCYTE, "CL:0000236"]  # monocyte, CD14 monocyte, B cell
    descends = label_descends(vocab)
    truth = np.array([0, 0, 1, 1])
    pred = np.array([1, 2, 0, 1])
    credited = credit_refinements(truth, pred, descends)
    assert credited.tolist() == [0, 2, 0, 1]
    assert macro_f1(truth, credited) > macro_f1(truth, pred)
