"""Every size of an evaluation run in one dataclass, with presets sized for shared CPUs.

The default (``small``) preset finishes the whole report in roughly ten to fifteen minutes on two
shared cores: it subsamples, shortens scVI and encoder training, and scores integration on a
subsample. The report states the preset it ran with, so its numbers are never mistaken for a
converged, full-size comparison.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class EvalConfig:
    """Sizes, seeds and knobs of one run (see ``PRESETS``)."""

    preset: str = "small"
    seed: int = 0
    atlas_cells: int = 8000
    atlas_studies: int = 10
    query_study_fraction: float = 0.3
    absent_types: tuple[str, ...] = ("CL:0000182", "CL:0000583")
    """Leaf types removed from the reference (hepatocyte: a lineage the reference never saw;
    alveolar macrophage: a novel subtype next to monocytes and macrophages the reference has)."""
    pbmc_absent_types: tuple[str, ...] = ("CL:0000451",)
    """pbmc68k type removed from its reference half (dendritic cell)."""
    pbmc_query_fraction: float = 0.5
    k: int = 15
    """neighbours of the kNN annotation vote."""
    retrieval_k: tuple[int, ...] = (10, 50)
    encoder_epochs: int | None = None
    """``cellsearch train --epochs``; None: the shipped recipe's own (what users get)."""
    encoder_seeds: tuple[int, ...] = (0, 1, 2)
    """training seeds of the shipped recipe (mean ± sd); the first one fills the headline."""
    ablation: bool = True
    """retrain with one recipe change at a time (benchmarks/eval/ablation.py)."""
    scvi_epochs: int = 40
    n_pcs: int = 50
    integration_cells: int = 4000
    """cells (ref + query) scib-metrics scores, subsampled: kBET and LISI grow quickly."""
    umap_cells: int = 3000
    confidence_quantile: float = 0.95
    """a method's unknown threshold: this quantile of reference cells' own kNN distance."""
    methods: tuple[str, ...] = (
        "cellsearch",
        "pca",
        "pca-inductive",
        "harmony",
        "scvi",
        "scvi-inductive",
        "scanorama",
    )
    perf: bool = True
    """gather the other benchmarks' performance figures (benchmarks/bench_*.py)."""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON/markdown-ready view of the run's settings."""
        return asdict(self)


PRESETS: dict[str, EvalConfig] = {
    "tiny": EvalConfig(
        preset="tiny",
        atlas_cells=2000,
        atlas_studies=6,
        encoder_epochs=2,
        encoder_seeds=(0,),
        ablation=False,
        scvi_epochs=3,
        integration_cells=1000,
        umap_cells=800,
        perf=False,
    ),
    "small": EvalConfig(),
    "full": EvalConfig(
        preset="full",
        atlas_cells=40000,
        atlas_studies=20,
        scvi_epochs=200,
        integration_cells=20000,
        umap_cells=10000,
    ),
}


def preset(name: str, **overrides: Any) -> EvalConfig:
    """A named preset with some fields replaced (``None`` overrides are ignored)."""
    if name not in PRESETS:
        msg = f"unknown preset {name!r}; choose one of {sorted(PRESETS)}"
        raise ValueError(msg)
    return replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})
