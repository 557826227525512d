from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from celldata.errors import InsufficientGeneOverlapError, WrongSpeciesError
from celldata.genes import align_genes, human_gene_table, to_symbols


def test_gene_table_is_the_real_gencode_human_table():
    table = human_gene_table()
    assert len(table) > 70_000
    assert list(table.columns[:2]) == ["gene_id", "symbol"]
    row = table.loc[table["gene_id"] == "ENSG00000167286"]  # CD3D
    assert row["symbol"].item() == "CD3D"


def test_to_symbols_maps_versioned_ensembl_ids_and_keeps_unknowns():
    out = to_symbols(["ENSG00000167286.10", "ENSG00000170458", "MS4A1", "NOT_A_GENE"])
    assert list(out) == ["CD3D", "CD14", "MS4A1", "NOT_A_GENE"]


def test_align_genes_reorders_and_zero_fills_like_a_dense_reference():
    var_names = ["ENSG00000170458", "JUNK", "MS4A1", "CD3D", "MS4A1"]  # CD14, -, MS4A1, CD3D, dup
    vocab = ["CD3D", "CD14", "LYZ", "MS4A1"]
    rng = np.random.default_rng(1)
    dense = rng.poisson(1.0, (50, 5)).astype(np.float32)
    alignment = align_genes(var_names, vocab, min_overlap=3)
    assert alignment.n_matched == 3
    assert alignment.n_vocabulary == 4
    out = alignment.apply(sp.csr_matrix(dense))
    expected = np.zeros((50, 4), dtype=np.float32)
    expected[:, 0] = dense[:, 3]
    expected[:, 1] = dense[:, 0]
    expected[:, 3] = dense[:, 2] + dense[:, 4]  # both MS4A1 copies add up (SCimilarity's rule)
    assert out.shape == (50, 4)
    assert out.has_sorted_indices
    np.testing.assert_array_equal(out.toarray(), expected)


def test_duplicate_symbols_are_summed_never_dropped():
    # two Ensembl ids of one symbol and a repeated symbol: every count reaches the model
    var_names = ["CD3D", "ENSG00000167286", "CD14", "CD14"]
    alignment = align_genes(var_names, ["CD3D", "CD14"], min_overlap=2)
    assert (alignment.n_matched, alignment.n_duplicates) == (2, 2)
    counts = sp.csr_matrix(np.array([[1, 2, 3, 4], [0, 5, 0, 6]], dtype=np.float32))
    np.testing.assert_array_equal(alignment.apply(counts).toarray(), [[3, 7], [5, 6]])


def test_fractional_overlap_is_capped_at_scimilaritys_5000_genes():
    vocab = [f"G{i}" for i in range(28_231)]
    # 6,000 of 28,231 genes: SCimilarity accepts it, half the model (14,116) would not
    alignment = align_genes(vocab[:6000], vocab, min_overlap=0.5)
    assert alignment.n_matched == 6000
    with pytest.raises(InsufficientGeneOverlapError) as err:
        align_genes(vocab[:4999], vocab, min_overlap=0.5)
    assert err.value.details["required"] == 5000
    # a small model keeps its half: 1,000 of 2,000
    assert align_genes(vocab[:1000], vocab[:2000], min_overlap=0.5).n_matched == 1000


def test_insufficient_overlap_says_how_many_matched():
    with pytest.raises(InsufficientGeneOverlapError, match=r"only 1 of the model's 4 genes") as err:
        align_genes(["CD3D", "FOO", "BAR"], ["CD3D", "CD14", "LYZ", "MS4A1"], min_overlap=0.5)
    assert err.value.code == "insufficient_gene_overlap"
    assert err.value.details["n_matched"] == 1
    assert err.value.details["required"] == 2


def test_mouse_ensembl_ids_are_refused():
    with pytest.raises(WrongSpeciesError, match=r"2 of 3 genes are mouse Ensembl ids.*ENSMUSG"):
        align_genes(["ENSMUSG00000102693", "ENSMUSG00000064842", "CD3D"], ["CD3D"], min_overlap=1)


def test_mouse_symbols_are_refused():
    with pytest.raises(WrongSpeciesError, match=r"mouse symbols") as err:
        align_genes(["Cd3e", "Cd14", "Lyz2", "Ms4a1"], ["CD3E"], min_overlap=1)
    assert err.value.code == "wrong_species"
