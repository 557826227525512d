"""Small input files, a tiny deterministic encoder and a validator for the pipeline tests.

The pipeline takes its encoder and validator as arguments; the unit tests pass small,
fast ones so that they test the pipeline's own guarantees (nothing written on a bad file,
resumable progress, cancel, cleanup) in well under a second each. The integration tests
run the real encoder and validation inside a real worker process.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from celldata.errors import InsufficientGeneOverlapError, NotRawCountsError
from celldata.read import read_metadata
from cellsearch.ingest.pipeline import ValidationSummary

N_GENES = 200
GENES = [f"GENE{i:04d}" for i in range(N_GENES)]
CELL_TYPES = ["CL:0000236", "CL:0000624", "CL:0000235"]


class TinyEncoder:
    """Aligns genes, log-normalises and projects with a fixed random matrix (deterministic)."""

    def __init__(self, model_version: str = "tiny-1", seed: int = 0) -> None:
        self.genes = list(GENES)
        self.model_version = model_version
        self._index = {g: i for i, g in enumerate(self.genes)}
        self._w = np.random.default_rng(seed).standard_normal((N_GENES, 128)).astype(np.float32)

    def embed(
        self,
        x: sp.csr_matrix,
        *,
        gene_names: Sequence[str],
        batch_size: int,
        min_overlap: float = 0.5,
    ) -> np.ndarray:
        cols = np.array([self._index.get(str(g), -1) for g in gene_names])
        keep = np.flatnonzero(cols >= 0)
        aligned = sp.csr_matrix((x.shape[0], N_GENES), dtype=np.float32)
        if keep.size:
            sel = sp.csr_matrix(x)[:, keep]
            perm = sp.csr_matrix(
                (np.ones(keep.size, np.float32), (np.arange(keep.size), cols[keep])),
                shape=(keep.size, N_GENES),
            )
            aligned = sel @ perm
        totals = np.asarray(aligned.sum(axis=1)).ravel()
        scale = sp.diags(1e4 / np.maximum(totals, 1.0))
        dense = np.log1p((scale @ aligned).toarray()) @ self._w + 1e-3
        return (dense / np.linalg.norm(dense, axis=1, keepdims=True)).astype(np.float32)


def tiny_validator(min_overlap: float = 0.5):
    """Raw counts and gene overlap: the two checks the pipeline tests need to trip."""

    def validate(path: Path, vocabulary: Sequence[str]) -> ValidationSummary:
        info = read_metadata(path)
        if not info.counts_location:
            raise NotRawCountsError(f"{path}: values look log-normalised; send raw counts")
        matched = len(set(map(str, info.var_names)) & set(vocabulary))
        if matched < min_overlap * len(vocabulary):
            raise InsufficientGeneOverlapError(
                f"{path}: only {matched} of the model's {len(vocabulary)} genes are present"
            )
        return ValidationSummary(info.n_cells, matched, info.n_genes)

    return validate


def make_obs(n_cells: int, *, prefix: str = "c", width: int = 6) -> pd.DataFrame:
    """CELLxGENE-style obs: three cell types, one tissue, healthy, two donors, four samples."""
    return pd.DataFrame(
        {
            "cell_type_ontology_term_id": pd.Categorical(
                [CELL_TYPES[i % len(CELL_TYPES)] for i in range(n_cells)]
            ),
            "tissue_ontology_term_id": pd.Categorical(["UBERON:0000178"] * n_cells),
            "disease_ontology_term_id": pd.Categorical(["PATO:0000461"] * n_cells),
            "assay_ontology_term_id": pd.Categorical(["EFO:0009922"] * n_cells),
            "donor_id": pd.Categorical([f"d{i % 2}" for i in range(n_cells)]),
            "sample_id": pd.Categorical([f"s{i % 4}" for i in range(n_cells)]),
        },
        index=pd.Index([f"{prefix}{i:0{width}d}" for i in range(n_cells)]),
    )


def write_h5ad(
    path: Path,
    n_cells: int,
    *,
    seed: int = 0,
    genes: Sequence[str] = GENES,
    log_normalised: bool = False,
    prefix: str = "c",
) -> Path:
    """A small raw-count .h5ad with CELLxGENE-style obs columns."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(0.8, size=(n_cells, len(genes))).astype(np.float32)
    counts[:, 0] += 1  # no empty cells
    x = sp.csr_matrix(counts)
    if log_normalised:
        x = sp.csr_matrix(np.log1p(counts / counts.sum(1, keepdims=True) * 1e4))
    obs = make_obs(n_cells, prefix=prefix)
    adata = ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=pd.Index(list(genes))))
    path.parent.mkdir(parents=True, exist_ok=True)
    adata.write_h5ad(path)
    return path
