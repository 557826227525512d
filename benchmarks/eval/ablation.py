"""What each part of the training recipe is worth: retrain with one change at a time.

Every row trains on the same reference cells as the headline encoder, with the shipped
``TrainConfig()`` defaults except the one change its name says, and is scored exactly like the
headline (same splits, same kNN vote, same cross-study unknown threshold).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import anndata as ad
import pandas as pd

from benchmarks.eval.config import EvalConfig
from benchmarks.eval.datasets import Split
from benchmarks.eval.encoder_fit import embed_split, write_reference
from benchmarks.eval.metrics import AncestorsFn
from benchmarks.eval.tasks import score_embedding

#: name -> TrainConfig fields changed from the shipped defaults.
VARIANTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("shipped recipe", {}),
    ("without the proxy loss", {"proxy_weight": 0.0}),
    ("without the triplet loss", {"triplet_weight": 0.0}),
    ("without augmentation", {"augment": "none"}),
    ("coarse labels not narrowed by tissue", {"tissue_key": None}),
    ("with a refit on all studies after early stopping", {"refit": True}),
    ("with reconstruction weight 0.5", {"recon_weight": 0.5}),
    ("reconstruction only", {"triplet_weight": 0.0, "proxy_weight": 0.0, "recon_weight": 1.0}),
    (
        "previous defaults (triplet 0.001 / recon 0.999, margin 0.05, 20 epochs, no proxy, "
        "no augmentation)",
        {
            "triplet_weight": 0.001,
            "recon_weight": 0.999,
            "margin": 0.05,
            "epochs": 20,
            "patience": 5,
            "proxy_weight": 0.0,
            "augment": "none",
        },
    ),
)


def _config(changes: dict[str, Any], seed: int, minutes: float | None) -> Any:
    from encoder.augment import NO_AUGMENTATION
    from encoder.config import TrainConfig

    fields = {k: (NO_AUGMENTATION if v == "none" else v) for k, v in changes.items()}
    return replace(TrainConfig(), seed=seed, progress=False, max_minutes=minutes, **fields)


def run_ablation(
    splits: list[Split],
    cfg: EvalConfig,
    workdir: Path,
    ancestors: AncestorsFn,
    log: Callable[[str], None],
) -> pd.DataFrame:
    """One row per variant: held-out scores on every split and the training time."""
    from celldata.reference import read_reference
    from cellsearch.app.cli import DEFAULT_TRAIN_MINUTES
    from encoder.model import CellEncoder

    reference, _ = read_reference([write_reference(splits, workdir / "reference")])
    rows = []
    for name, changes in VARIANTS:
        started = time.perf_counter()
        enc = CellEncoder.train(
            ad.AnnData(reference.X, obs=reference.obs, var=reference.var),
            config=_config(changes, cfg.seed, DEFAULT_TRAIN_MINUTES),
        )
        seconds = time.perf_counter() - started
        row: dict[str, Any] = {"variant": name, "train s": seconds}
        for split in splits:
            sc = score_embedding(name, embed_split(enc, split), split, cfg, ancestors)
            row[f"{split.name} macro-F1"] = sc.annotation["macro_f1"]
            if "auroc" in sc.confidence:
                row[f"{split.name} unknown AUROC"] = sc.confidence["auroc"]
                row[f"{split.name} known confident"] = sc.confidence["in_dist_confident"]
        scores = ", ".join(f"{k} {v:.3f}" for k, v in row.items() if k != "variant")
        log(f"  ablation {name}: {scores}")
        rows.append(row)
    return pd.DataFrame(rows).set_index("variant")


def seed_table(per_seed: list[dict[str, float]]) -> pd.DataFrame:
    """``mean ± sd`` over seeds of each metric (one column per metric)."""
    frame = pd.DataFrame(per_seed)
    out = {
        col: f"{frame[col].mean():.3f} ± {frame[col].std(ddof=1) if len(frame) > 1 else 0.0:.3f}"
        for col in frame.columns
        if col != "seed"
    }
    out["seeds"] = ", ".join(str(int(s)) for s in frame["seed"])
    return pd.DataFrame([out], index=pd.Index(["cellsearch"], name="method"))


def per_seed_scores(
    enc: Any,
    seed: int,
    seconds: float,
    splits: list[Split],
    cfg: EvalConfig,
    ancestors: AncestorsFn,
) -> dict[str, float]:
    """One training seed's headline numbers on every split."""
    row: dict[str, float] = {"seed": seed, "train s": seconds}
    for split in splits:
        sc = score_embedding("cellsearch", embed_split(enc, split), split, cfg, ancestors)
        row[f"{split.name} macro-F1"] = sc.annotation["macro_f1"]
        row[f"{split.name} accuracy"] = sc.annotation["accuracy"]
        if "auroc" in sc.confidence:
            row[f"{split.name} unknown AUROC"] = sc.confidence["auroc"]
            row[f"{split.name} known confident"] = sc.confidence["in_dist_confident"]
    return row
