"""cellsearch's encoder retrained on reference cells only: the honest leave-out protocol.

The committed default model (``encoder.build_default``) was trained on the simulated atlas of
seed 0 *and on all 700 pbmc68k cells*, so scoring it on either split would test it on its own
training data. The harness instead runs ``cellsearch train`` with its defaults, the command a
user runs, on the simulated reference studies plus the PBMC reference half, and nothing else:
no query study, no query PBMC, no absent type from either split.

pbmc68k ships log1p(CP10k) only; like ``build_default`` we turn it back into per-10k
pseudo-counts (``expm1``) aligned to the atlas gene panel, which the encoder's own normalisation
maps to model inputs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from benchmarks.eval.config import EvalConfig
from benchmarks.eval.datasets import REF_LABEL, STUDY, Split

if TYPE_CHECKING:
    from encoder.model import CellEncoder

PBMC_MIN_OVERLAP = 0.2
"""pbmc68k's 765 genes cover ~38% of the 2,000-gene panel (build_default uses 0.2 too)."""


def pseudo_counts(split: Split) -> sp.csr_matrix:
    """Raw counts when the split has them, else ``expm1`` of its log-normalised values, rounded.

    pbmc68k's pseudo-counts are counts per 10k; rounding them is harmless (one UMI of a
    ~2,000-UMI cell is ~5 per 10k) and lets them pass the raw-count check every reader and
    ``CellEncoder.embed`` apply.
    """
    if split.counts is not None:
        return sp.csr_matrix(split.counts, dtype=np.float32)
    x = sp.csr_matrix(split.lognorm, dtype=np.float32, copy=True)
    x.data = np.rint(np.expm1(x.data))
    x.eliminate_zeros()
    return x


def _reference_part(split: Split, genes: list[str]) -> ad.AnnData:
    """The split's reference cells as a file ``cellsearch train`` reads: integer counts."""
    from celldata.genes import align_genes

    ref = split.is_ref
    x = pseudo_counts(split)[ref]
    if list(split.genes) != list(genes):
        x = align_genes(list(split.genes), genes, min_overlap=PBMC_MIN_OVERLAP).apply(x)
    obs = pd.DataFrame(
        {
            "cell_type_ontology_term_id": split.obs.loc[ref, REF_LABEL].to_numpy(),
            "study_id": split.obs.loc[ref, STUDY].to_numpy(),
            "tissue_ontology_term_id": split.obs.loc[ref, "tissue"].to_numpy(),
        },
        index=split.obs.index[ref],
    )
    return ad.AnnData(X=sp.csr_matrix(x, dtype=np.float32), obs=obs, var=pd.DataFrame(index=genes))


def write_reference(splits: list[Split], folder: Path) -> Path:
    """Every split's reference cells, one .h5ad per split, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    genes = list(splits[0].genes)
    for split in splits:
        _reference_part(split, genes).write_h5ad(folder / f"{split.name}.h5ad")
    return folder


def train_reference_encoder(
    splits: list[Split], cfg: EvalConfig, workdir: Path, *, seed: int | None = None
) -> tuple[CellEncoder, float, list[str]]:
    """``(encoder, seconds, studies)``: ``cellsearch train`` with its defaults on the references.

    The very command a user runs (``cellsearch train FOLDER -o MODEL``): the shipped recipe
    and architecture, the CLI's time budget, reading the files the way ingestion reads them.
    Only the seed changes between repeats.
    """
    from cellsearch.app.cli import main as cellsearch
    from encoder.model import CellEncoder

    folder = write_reference(splits, workdir / "reference")
    out = workdir / f"model-seed{cfg.seed if seed is None else seed}"
    argv = ["train", str(folder), "-o", str(out), "--seed", str(cfg.seed if seed is None else seed)]
    if cfg.encoder_epochs is not None:
        argv += ["--epochs", str(cfg.encoder_epochs)]
    started = time.perf_counter()
    code = cellsearch(argv)
    seconds = time.perf_counter() - started
    if code != 0:
        msg = f"cellsearch {' '.join(argv)} exited with {code}"
        raise RuntimeError(msg)
    enc = CellEncoder.load(out)
    return enc, seconds, list(enc.training["studies"])


def embed_split(enc: CellEncoder, split: Split) -> np.ndarray:
    """Every cell of a split through the encoder (raw or pseudo-counts, model normalisation)."""
    overlap = PBMC_MIN_OVERLAP if split.counts is None else 0.5
    return enc.embed(pseudo_counts(split), gene_names=list(split.genes), min_overlap=overlap)
