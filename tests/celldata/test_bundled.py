from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from celldata.bundled import load_celltypist_sample, load_pbmc68k_reduced
from celldata.errors import NotRawCountsError
from celldata.genes import align_genes
from celldata.simulate import atlas_genes
from celldata.validate import validate_dataset


def test_pbmc68k_has_real_cl_labels_and_no_raw_counts(tmp_path: Path):
    adata = load_pbmc68k_reduced()
    assert adata.shape == (700, 765)
    ids = adata.obs["cell_type_ontology_term_id"].astype(str)
    assert ids.str.startswith("CL:").all()
    monocytes = adata.obs["bulk_labels"] == "CD14+ Monocyte"
    assert set(ids[monocytes]) == {"CL:0001054"}
    path = tmp_path / "pbmc.h5ad"
    adata.write_h5ad(path)
    with pytest.raises(NotRawCountsError, match=r"non-integer|negative"):
        validate_dataset(path)


def test_celltypist_sample_is_raw_counts_that_align():
    adata = load_celltypist_sample(n_cells=30)
    assert adata.shape == (30, 32_786)
    data = adata.X.data
    assert np.all(data == np.round(data)) and data.min() > 0
    alignment = align_genes(adata.var_names, atlas_genes(), min_overlap=0.8)
    assert alignment.fraction_matched > 0.8
    assert alignment.apply(adata.X).shape == (30, 2000)
