"""Losses: triplet loss with ontology-aware online semi-hard mining, and reconstruction.

Following SCimilarity: triplets are mined inside each batch on the unit
embeddings (Euclidean distance, margin 0.05). An anchor's positive has the same
Cell Ontology type and comes from a *different study*, which is what pushes
study effects out of the embedding. A negative is never an ontology ancestor or
descendant of the anchor's type (a "T cell" is not a negative for a "CD4 T
cell"): ``related[i, j]`` (from ``ontology.related_matrix``) masks them out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

SELECTIONS = ("semihard", "hardest", "random")


@dataclass(frozen=True)
class Triplets:
    """Index arrays into the batch, one entry per mined triplet."""

    anchor: torch.Tensor
    positive: torch.Tensor
    negative: torch.Tensor

    def __len__(self) -> int:
        return int(self.anchor.numel())


def pair_masks(
    labels: torch.Tensor, studies: torch.Tensor, related: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(positive[a, p], negative[a, n])`` boolean masks for a batch.

    labels: (B,) int indices into the type vocabulary; studies: (B,) ints;
    related: (T, T) bool over the vocabulary, True where two types are the
    same or one is an ancestor of the other.
    """
    same_type = labels[:, None] == labels[None, :]
    other_study = studies[:, None] != studies[None, :]
    positive = same_type & other_study
    negative = ~related[labels[:, None], labels[None, :]]
    return positive, negative


@torch.no_grad()
def mine_triplets(
    emb: torch.Tensor,
    labels: torch.Tensor,
    studies: torch.Tensor,
    related: torch.Tensor,
    *,
    margin: float = 0.05,
    selection: str = "semihard",
    generator: torch.Generator | None = None,
) -> Triplets:
    """Every valid (anchor, positive) pair with one negative chosen per pair.

    ``semihard``: the closest negative farther than the positive, preferring one
    inside the margin; when every negative is closer than the positive, the
    farthest one (the FaceNet/tf-addons rule, which avoids collapsing early).
    ``hardest``: the closest negative. ``random``: any valid negative.
    """
    if selection not in SELECTIONS:
        msg = f"negative selection {selection!r} unknown; choose one of {SELECTIONS}"
        raise ValueError(msg)
    positive, negative = pair_masks(labels, studies, related.to(labels.device))
    anchor_idx, pos_idx = torch.nonzero(positive, as_tuple=True)
    keep = negative[anchor_idx].any(dim=1)
    anchor_idx, pos_idx = anchor_idx[keep], pos_idx[keep]
    if anchor_idx.numel() == 0:
        empty = torch.zeros(0, dtype=torch.long, device=emb.device)
        return Triplets(empty, empty, empty)
    dist = torch.cdist(emb.float(), emb.float())
    d_an = dist[anchor_idx]  # (P, B)
    valid = negative[anchor_idx]
    inf = torch.tensor(float("inf"), device=emb.device)
    if selection == "hardest":
        neg_idx = torch.where(valid, d_an, inf).argmin(dim=1)
    elif selection == "random":
        noise = torch.rand(d_an.shape, generator=generator, device="cpu").to(emb.device)
        neg_idx = torch.where(valid, noise, -inf).argmax(dim=1)
    else:
        d_ap = dist[anchor_idx, pos_idx][:, None]
        outside = valid & (d_an > d_ap)
        closest_outside = torch.where(outside, d_an, inf).argmin(dim=1)
        farthest = torch.where(valid, d_an, -inf).argmax(dim=1)
        neg_idx = torch.where(outside.any(dim=1), closest_outside, farthest)
    return Triplets(anchor_idx, pos_idx, neg_idx)


def triplet_loss(emb: torch.Tensor, triplets: Triplets, margin: float = 0.05) -> torch.Tensor:
    """Mean of ``relu(d(a, p) - d(a, n) + margin)`` over mined triplets (0 when none)."""
    if len(triplets) == 0:
        return emb.sum() * 0.0
    a, p, n = emb[triplets.anchor], emb[triplets.positive], emb[triplets.negative]
    d_ap = (a - p).pow(2).sum(dim=1).clamp_min(1e-12).sqrt()
    d_an = (a - n).pow(2).sum(dim=1).clamp_min(1e-12).sqrt()
    return F.relu(d_ap - d_an + margin).mean()


def reconstruction_loss(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between decoder output and log-normalised input."""
    return F.mse_loss(recon.float(), target.float())


def l1_penalty(weight: torch.Tensor) -> torch.Tensor:
    """Mean absolute first-layer weight (sparsifies which genes each unit reads)."""
    return weight.abs().mean()


class LabelProxies(torch.nn.Module):
    """One learnable unit vector per label: a proxy-based metric loss over partial labels.

    Triplets compare cells inside a batch; proxies give every cell a fixed target to gather
    round, which converges in far fewer steps and keeps types apart that rarely meet in a
    batch (NormFace / Proxy-NCA). References label at mixed granularity, so a cell labelled
    "fibroblast" may sit at the "fibroblast" proxy *or* at any descendant's ("fibroblast of
    lung"): its loss is the negative log of the probability mass on the proxies its label is
    compatible with (``compatible[label, proxy]``: the proxy's label is the cell's label or a
    descendant of it). A coarse label never pulls fine types together, a fine label is never
    satisfied by its coarse parent, and siblings stay apart. Measured on the simulated atlas,
    one proxy per label beat one per finest label: a true "fibroblast" keeps a place of its
    own instead of being folded into "fibroblast of lung". Training only: proxies are not part
    of the saved encoder.
    """

    def __init__(self, compatible: torch.Tensor, latent_dim: int, scale: float = 16.0) -> None:
        super().__init__()
        if compatible.ndim != 2 or not bool(compatible.any(dim=1).all()):
            msg = "every label needs at least one compatible class"
            raise ValueError(msg)
        self.compatible: torch.Tensor
        self.register_buffer("compatible", compatible.bool())
        self.proxies = torch.nn.Parameter(torch.randn(compatible.shape[1], latent_dim))
        self.scale = float(scale)

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = self.scale * emb @ F.normalize(self.proxies, dim=1).T
        log_p = logits.log_softmax(dim=1)
        allowed = self.compatible[labels]
        return -torch.logsumexp(log_p.masked_fill(~allowed, float("-inf")), dim=1).mean()
