"""Model and training configuration: every size and knob in two dataclasses.

One config object (nanoGPT style) rather than constructor arguments scattered over
modules, so a checkpoint can store exactly what rebuilds its network and a run can
be reproduced from its ``training.json``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from encoder.augment import AugmentConfig


@dataclass(frozen=True)
class EncoderConfig:
    """Network shape, defaulting to SCimilarity's published architecture.

    SCimilarity (Heimberg et al., 2024): input dropout 0.4, then blocks of
    Linear -> BatchNorm -> PReLU with 1024 units (dropout 0.5 between hidden
    blocks), a final Linear to 128 dimensions and L2 normalisation. The decoder
    mirrors the hidden sizes back to the gene space.
    """

    n_genes: int
    hidden_dims: tuple[int, ...] = (1024, 1024, 1024)
    latent_dim: int = 128
    input_dropout: float = 0.4
    dropout: float = 0.5
    batchnorm_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.n_genes < 1:
            msg = f"n_genes must be positive, got {self.n_genes}"
            raise ValueError(msg)
        if not self.hidden_dims:
            msg = "hidden_dims needs at least one hidden layer (SCimilarity uses three of 1024)"
            raise ValueError(msg)
        object.__setattr__(self, "hidden_dims", tuple(int(h) for h in self.hidden_dims))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        data = asdict(self)
        data["hidden_dims"] = list(self.hidden_dims)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EncoderConfig:
        """Rebuild from :meth:`to_dict` output, refusing unknown keys."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            msg = f"unknown EncoderConfig keys {sorted(unknown)}; known: {sorted(known)}"
            raise ValueError(msg)
        return cls(**data)


#: Hidden sizes of the encoders ``cellsearch train`` builds. SCimilarity's (1024, 1024, 1024)
#: stays ``EncoderConfig``'s default so its published checkpoints load; trained on references
#: of thousands of cells it scored lower on held-out studies (macro-F1 0.700 vs 0.769 on the
#: seed-0 split, 0.497 vs 0.492 on seed 1) and took 15-50x longer on two CPU cores.
RECIPE_HIDDEN_DIMS: tuple[int, ...] = (256, 256)


@dataclass
class TrainConfig:
    """Optimisation, loss weighting, sampling and validation settings.

    The defaults are the shipped recipe, chosen by held-out-study measurements on the
    simulated atlas (docs/encoder.md, "Training recipe"; the ablation in
    benchmarks/results/REPORT.md): triplets with SCimilarity's ontology rules at margin 0.2,
    a proxy loss over the reference's (partial) labels, a light reconstruction term, mild
    study-level augmentation, early stopping on held-out studies (best weights kept).
    SCimilarity's own weighting (0.001 triplet / 0.999 reconstruction, margin 0.05) needs
    millions of cells and long training; on references of thousands it learns almost nothing
    in minutes.
    """

    epochs: int = 20
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 0
    steps_per_epoch: int | None = None
    margin: float = 0.2
    triplet_weight: float = 0.5
    recon_weight: float = 0.1
    l1_weight: float = 0.0
    #: Weight of the proxy loss over the labels (:class:`encoder.losses.LabelProxies`).
    proxy_weight: float = 1.0
    proxy_scale: float = 16.0
    negative_selection: str = "semihard"
    cells_per_type: int = 8
    val_studies: tuple[str, ...] = ()
    val_fraction_studies: float = 0.2
    knn_k: int = 50
    patience: int = 3
    min_delta: float = 1e-4
    seed: int = 0
    deterministic: bool = True
    max_epochs_per_run: int | None = None
    #: Wall-clock budget for the whole run: the epoch plan (and the learning-rate schedule)
    #: shrinks to what fits, measured after each epoch.
    max_minutes: float | None = None
    #: After early stopping on held-out studies, retrain on every study for the best epochs.
    #: Off: on three seeds of the simulated atlas the refit scored lower on unseen studies
    #: (macro-F1 0.700/0.497/0.406 vs 0.732/0.519/0.510) and on the real PBMCs (0.609 vs
    #: 0.706): the selected epoch's weights generalise better than a fresh, shorter run.
    refit: bool = False
    device: str = "auto"
    bf16: bool = True
    num_threads: int | None = None
    progress: bool = True
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    label_key: str = "cell_type_ontology_term_id"
    study_key: str = "study_id"
    #: Narrows what a coarse label may stand for to the types its tissue holds
    #: (:func:`encoder.train.label_contexts`); a reference without the column is unaffected.
    tissue_key: str | None = "tissue_ontology_term_id"
    target_sum: float = 1e4
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        data = asdict(self)
        data["val_studies"] = list(self.val_studies)
        data["augment"] = self.augment.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild from :meth:`to_dict` output, ignoring keys this version lacks."""
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        if "val_studies" in kwargs:
            kwargs["val_studies"] = tuple(kwargs["val_studies"])
        if isinstance(kwargs.get("augment"), dict):
            kwargs["augment"] = AugmentConfig.from_dict(kwargs["augment"])
        return cls(**kwargs)


def resolve_device(device: str | None) -> str:
    """``"auto"``/None -> ``"cuda"`` when available else ``"cpu"``; otherwise as given."""
    if device in (None, "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)
