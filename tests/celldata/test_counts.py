"""The one counts rule: layers["counts"], else .raw holding counts, else X; refused with
ingestion's message when the chosen matrix is not raw counts."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from celldata.counts import COUNTS_ORDER, check_raw_counts, counts_of
from celldata.errors import NotRawCountsError
from celldata.read import read_metadata

GENES = [f"G{i}" for i in range(30)]


def _counts(seed: int = 0, n: int = 40) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    return sp.csr_matrix(rng.poisson(2.0, size=(n, len(GENES))).astype(np.float32))


def _lognorm(x: sp.csr_matrix) -> sp.csr_matrix:
    dense = x.toarray()
    return sp.csr_matrix(np.log1p(dense / dense.sum(1, keepdims=True) * 1e4).astype(np.float32))


def _cellxgene(counts: sp.csr_matrix) -> ad.AnnData:
    """CELLxGENE's layout: log-normalised X, raw counts in .raw."""
    adata = ad.AnnData(X=counts.copy())
    adata.var_names = GENES
    adata.raw = adata
    adata.X = _lognorm(counts)
    return adata


def test_the_rule_order_is_counts_layer_then_raw_then_x():
    assert COUNTS_ORDER == ("layers/counts", "raw", "X")


def test_raw_counts_in_raw_are_found_under_a_lognormalised_x():
    counts = _counts()
    got = counts_of(_cellxgene(counts))
    assert got.location == "raw"
    assert got.var_names == GENES
    np.testing.assert_array_equal(sp.csr_matrix(got.matrix).toarray(), counts.toarray())


def test_a_counts_layer_wins_over_raw_and_x():
    counts = _counts(1)
    adata = _cellxgene(_counts(2))
    adata.layers["counts"] = counts
    got = counts_of(adata)
    assert got.location == "layers/counts"
    np.testing.assert_array_equal(sp.csr_matrix(got.matrix).toarray(), counts.toarray())


def test_x_is_used_when_it_holds_the_counts():
    adata = ad.AnnData(X=_counts(3))
    assert counts_of(adata).location == "X"


def test_lognormalised_x_alone_is_refused_with_ingestions_message():
    x = _lognorm(_counts(4))
    adata = ad.AnnData(X=x)
    with pytest.raises(NotRawCountsError) as err:
        counts_of(adata, where="query.h5ad")
    with pytest.raises(NotRawCountsError) as ingestion:
        check_raw_counts(x.data, where="query.h5ad", location="X")
    assert str(err.value) == str(ingestion.value)
    assert "looks log-normalised" in str(err.value)


def test_the_layer_argument_chooses_and_is_checked():
    adata = _cellxgene(_counts(5))
    with pytest.raises(NotRawCountsError, match="log-normalised"):
        counts_of(adata, layer="X")
    assert counts_of(adata, layer="raw").location == "raw"
    with pytest.raises(NotRawCountsError, match="no 'layers/spliced' matrix"):
        counts_of(adata, layer="spliced")


def test_files_follow_the_same_rule(tmp_path):
    path = tmp_path / "cxg.h5ad"
    _cellxgene(_counts(6)).write_h5ad(path)
    assert read_metadata(path).counts_location == "raw"
