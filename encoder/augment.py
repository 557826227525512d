"""Technical variation between studies, simulated on a training batch.

A query study differs from every reference study in ways that say nothing about cell type:
each gene is captured with its own efficiency (chemistry, protocol), libraries are deeper or
shallower, ambient RNA leaks the tissue's average profile into every droplet, and gene panels
miss genes. An encoder that has only seen the reference studies' versions of these effects
learns them as features; one that sees fresh random versions at every step learns to ignore
them, so unseen studies look like seen ones.

Everything works on a dense batch of log-normalised values (``log1p(counts per target_sum)``)
on the training device: expression is lifted back to counts per ``target_sum``, perturbed,
renormalised and logged again. Cells of one *study* in a batch share one draw of the study-level
effects (capture scaling, panel, ambient share), the way a real study shifts all of its cells
together; depth is drawn per cell.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class AugmentConfig:
    """Strength of each simulated technical effect (0 turns it off)."""

    #: Probability that a batch is augmented at all (the rest stay as measured).
    p: float = 0.5
    #: sd of the per-study, per-gene log capture efficiency.
    gene_scale_sd: float = 0.5
    #: sd of a further per-gene log effect drawn per (study, cell type): a type's profile
    #: reads differently from study to study (dissociation, state, protocol).
    type_scale_sd: float = 0.0
    #: Library depth as a share of the original, log-uniform in this range; counts are redrawn
    #: from a Poisson at that depth (the sparsity of a shallower library).
    depth_range: tuple[float, float] = (0.2, 1.0)
    #: Typical library size of the training cells, in counts (depth thinning needs one).
    typical_depth: float = 3000.0
    #: Ambient RNA: up to this share of each cell's library is the batch's mean profile.
    ambient_max: float = 0.1
    #: Up to this share of genes is missing from a study's panel (reads zero).
    panel_dropout_max: float = 0.2

    @property
    def enabled(self) -> bool:
        return self.p > 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["depth_range"] = list(self.depth_range)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AugmentConfig:
        kwargs = dict(data)
        if "depth_range" in kwargs:
            kwargs["depth_range"] = tuple(kwargs["depth_range"])
        return cls(**kwargs)


NO_AUGMENTATION = AugmentConfig(p=0.0)


def augment_batch(
    x: torch.Tensor,
    studies: torch.Tensor,
    config: AugmentConfig,
    *,
    target_sum: float,
    generator: torch.Generator,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """A perturbed copy of ``x`` (cells x genes, log-normalised); ``x`` is left as it is.

    ``studies``: each cell's study code; cells of one study share the study-level draws.
    ``labels``: each cell's type code (needed by ``type_scale_sd``).
    ``generator`` is a CPU generator (reproducible on every device).
    """
    if not config.enabled or float(torch.rand(1, generator=generator)) >= config.p:
        return x
    device = x.device
    n_cells, n_genes = x.shape
    _, group = torch.unique(studies, return_inverse=True)
    n_groups = int(group.max()) + 1 if n_cells else 0

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=generator).to(device)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=generator).to(device)

    expr = torch.expm1(x.float())  # counts per target_sum
    if config.gene_scale_sd > 0:
        expr = expr * torch.exp(config.gene_scale_sd * randn(n_groups, n_genes))[group]
    if config.type_scale_sd > 0 and labels is not None:
        pairs = studies.long() * (int(labels.max()) + 1) + labels.long()
        _, pair = torch.unique(pairs, return_inverse=True)
        n_pairs = int(pair.max()) + 1
        expr = expr * torch.exp(config.type_scale_sd * randn(n_pairs, n_genes))[pair]
    if config.panel_dropout_max > 0:
        share = config.panel_dropout_max * rand(n_groups, 1)
        expr = expr * (rand(n_groups, n_genes) >= share)[group]
    if config.ambient_max > 0:
        soup = expr.mean(dim=0, keepdim=True)
        soup = soup / soup.sum().clamp_min(1e-12)
        alpha = config.ambient_max * rand(n_groups, 1)[group]
        expr = (1 - alpha) * expr / expr.sum(dim=1, keepdim=True).clamp_min(1e-12) + alpha * soup
    expr = expr / expr.sum(dim=1, keepdim=True).clamp_min(1e-12)  # shares of the library
    low, high = config.depth_range
    if low < 1.0 or high < 1.0:
        log_low, log_high = torch.log(torch.tensor([low, high]))
        share = torch.exp(log_low + (log_high - log_low) * rand(n_cells, 1))
        depth = config.typical_depth * share
        sampled = torch.poisson((expr * depth).cpu(), generator=generator).to(device)
        totals = sampled.sum(dim=1, keepdim=True)
        # A cell thinned to nothing keeps its un-thinned profile rather than becoming empty.
        expr = torch.where(totals > 0, sampled / totals.clamp_min(1.0), expr)
    return torch.log1p(expr * target_sum).to(x.dtype)
