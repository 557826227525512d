"""Fixtures for celldata: a small simulated atlas (memory and file) and a file factory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from celldata.simulate import make_atlas, simulate_atlas


@pytest.fixture(scope="session")
def small_atlas() -> ad.AnnData:
    """600 simulated cells from 4 studies (one per tissue); treat as read-only."""
    return simulate_atlas(600, 4, seed=3)


@pytest.fixture(scope="session")
def atlas_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("atlas") / "atlas.h5ad"
    make_atlas(path, n_cells=600, n_studies=4, seed=3, chunk_size=250)
    return path


def good_obs(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "cell_type_ontology_term_id": ["CL:0000236"] * n,
            "tissue_ontology_term_id": ["UBERON:0000178"] * n,
            "disease_ontology_term_id": ["PATO:0000461"] * n,
            "donor_id": ["d1"] * n,
        },
        index=[f"cell{i}" for i in range(n)],
    )


HUMAN_GENES = ["CD3E", "CD14", "LYZ", "MS4A1", "NKG7", "GNLY", "CD8A", "IL7R", "FCGR3A", "PPBP"]


@pytest.fixture
def make_obs() -> Callable[[int], pd.DataFrame]:
    """Valid CELLxGENE obs for ``n`` cells (B cells, blood, normal, one donor)."""
    return good_obs


@pytest.fixture
def write_h5ad(tmp_path: Path) -> Callable[..., Path]:
    """Write a small .h5ad: 20 cells x 10 human genes of raw counts unless overridden."""

    def _write(
        X: np.ndarray | sp.spmatrix | None = None,
        *,
        obs: pd.DataFrame | None = None,
        var_names: list[str] | None = None,
        name: str = "input.h5ad",
        layers: dict[str, object] | None = None,
    ) -> Path:
        rng = np.random.default_rng(0)
        if X is None:
            X = rng.poisson(3.0, (20, 10)).astype(np.float32) + 1
        n, g = X.shape
        adata = ad.AnnData(
            X=sp.csr_matrix(X) if not sp.issparse(X) else X,
            obs=obs if obs is not None else good_obs(n),
            var=pd.DataFrame(index=var_names or HUMAN_GENES[:g]),
        )
        for key, value in (layers or {}).items():
            adata.layers[key] = value
        path = tmp_path / name
        adata.write_h5ad(path)
        return path

    return _write
