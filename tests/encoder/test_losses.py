"""Triplet mining on constructed batches, the loss itself, and the balanced sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from encoder.losses import mine_triplets, triplet_loss
from encoder.sampler import BalancedBatchSampler

# Type vocabulary: 0 T cell, 1 CD4 T cell (a T cell), 2 CD8 T cell (a T cell), 3 B cell, 4 monocyte
RELATED = np.eye(5, dtype=bool)
for child in (1, 2):
    RELATED[0, child] = RELATED[child, 0] = True


def _batch(seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(5), 8)
    studies = np.tile(np.arange(4), 10)
    rng.shuffle(studies)
    emb = torch.nn.functional.normalize(
        torch.randn(40, 16, generator=torch.Generator().manual_seed(seed)), dim=1
    )
    return emb, torch.from_numpy(labels), torch.from_numpy(studies), torch.from_numpy(RELATED)


@pytest.mark.parametrize("selection", ["semihard", "hardest", "random"])
def test_miner_respects_studies_types_and_ontology(selection):
    for seed in range(5):
        emb, labels, studies, related = _batch(seed)
        t = mine_triplets(emb, labels, studies, related, margin=0.05, selection=selection)
        assert len(t) > 0
        a, p, n = t.anchor, t.positive, t.negative
        assert torch.all(labels[a] == labels[p])
        assert torch.all(studies[a] != studies[p]), "positive from the anchor's own study"
        assert not related[labels[a], labels[n]].any(), "ontology-related type used as negative"
        # T cell anchors never see CD4/CD8 T cells as negatives, and vice versa
        t_anchor = labels[a] == 0
        assert not torch.isin(labels[n][t_anchor], torch.tensor([0, 1, 2])).any()
        # every cross-study same-type pair is used as a positive
        same = (labels[:, None] == labels[None, :]) & (studies[:, None] != studies[None, :])
        assert len(t) == int(same.sum())


def test_semihard_prefers_the_closest_negative_beyond_the_positive():
    # anchor 0 (type 3, study 0), positive 1 (type 3, study 1) at distance 0.2;
    # negatives of type 4 at distances 0.1 (too hard), 0.22 (semi-hard), 0.9 (easy)
    emb = torch.tensor([[0.0, 0.0], [0.2, 0.0], [0.0, 0.1], [0.0, 0.22], [0.0, 0.9]])
    labels = torch.tensor([3, 3, 4, 4, 4])
    studies = torch.tensor([0, 1, 0, 1, 2])
    t = mine_triplets(emb, labels, studies, torch.from_numpy(RELATED), selection="semihard")
    first = (t.anchor == 0) & (t.positive == 1)
    assert t.negative[first].tolist() == [3]
    hardest = mine_triplets(emb, labels, studies, torch.from_numpy(RELATED), selection="hardest")
    assert hardest.negative[(hardest.anchor == 0) & (hardest.positive == 1)].tolist() == [2]


def test_no_cross_study_positive_means_no_triplet():
    emb, labels, _, related = _batch()
    same_study = torch.zeros_like(labels)
    assert len(mine_triplets(emb, labels, same_study, related)) == 0


def test_triplet_loss_value_and_gradient():
    emb = torch.tensor([[0.0, 0.0], [0.2, 0.0], [0.0, 0.22]], requires_grad=True)
    emb_t = torch.tensor([0]), torch.tensor([1]), torch.tensor([2])
    from encoder.losses import Triplets

    loss = triplet_loss(emb, Triplets(*emb_t), margin=0.05)
    assert loss.item() == pytest.approx(0.2 - 0.22 + 0.05, abs=1e-6)
    loss.backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0


def test_balanced_sampler_spreads_types_and_studies():
    rng = np.random.default_rng(0)
    # type 0 is abundant in study 0; type 1 is rare and spread over studies 1-3
    labels = np.array([0] * 1000 + [1] * 12)
    studies = np.array([0] * 1000 + [1, 2, 3] * 4)
    rng.shuffle(order := np.arange(len(labels)))
    sampler = BalancedBatchSampler(labels[order], studies[order], batch_size=16, cells_per_type=8)
    batch = sampler.batch()
    assert len(batch) == 16
    picked_labels = labels[order][batch]
    assert (picked_labels == 1).sum() == 8, "the rare type gets as many draws as the abundant one"
    assert set(studies[order][batch][picked_labels == 1]) == {1, 2, 3}
