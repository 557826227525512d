"""Every bad input raises its specific error, with a message that names the fault, and leaves
nothing behind: the validator writes nothing, so the folder holds only the input afterwards."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from celldata.errors import (
    DataValidationError,
    DuplicateCellIdsError,
    EmptyCellsError,
    InsufficientGeneOverlapError,
    MissingMetadataError,
    NegativeCountsError,
    NonIntegerCountsError,
    ObsoleteTermError,
    UnknownTermError,
    UnreadableFileError,
    WrongSpeciesError,
)
from celldata.validate import validate_dataset

VOCAB = ["CD3E", "CD14", "LYZ", "MS4A1", "NKG7", "GNLY", "CD8A", "IL7R", "FCGR3A", "PPBP"]


def _raises_and_writes_nothing(path: Path, error: type[DataValidationError], pattern: str, **kw):
    before = sorted(p.name for p in path.parent.iterdir())
    with pytest.raises(error, match=pattern) as err:
        validate_dataset(path, vocabulary=kw.pop("vocabulary", VOCAB), **kw)
    assert sorted(p.name for p in path.parent.iterdir()) == before
    assert err.value.code == error.code
    return err.value


def test_a_good_file_passes(write_h5ad: Callable[..., Path]):
    report = validate_dataset(write_h5ad(), vocabulary=VOCAB)
    assert (report.n_cells, report.n_genes, report.counts_location) == (20, 10, "X")
    assert report.n_genes_matched == 10
    assert report.terms["cell_type_ontology_term_id"] == ["CL:0000236"]


def test_the_simulated_atlas_passes(atlas_file: Path):
    from celldata.simulate import atlas_genes

    report = validate_dataset(atlas_file, vocabulary=atlas_genes(), min_gene_overlap=0.99)
    assert report.n_cells == 600
    assert "MONDO:0015925" in report.terms["disease_ontology_term_id"] or report.terms


def test_negative_values(write_h5ad):
    X = np.ones((20, 10), dtype=np.float32)
    X[3, 2] = -0.5
    _raises_and_writes_nothing(
        write_h5ad(X), NegativeCountsError, r"X has negative values \(min -0.5\)"
    )


def test_non_integer_values(write_h5ad):
    X = np.full((20, 10), 30.5, dtype=np.float32)
    _raises_and_writes_nothing(
        write_h5ad(X), NonIntegerCountsError, r"non-integer values \(e.g. 30.5.*normalised"
    )


def test_log_normalised_values(write_h5ad):
    counts = np.random.default_rng(0).poisson(3.0, (20, 10)) + 1
    X = np.log1p(counts / counts.sum(1, keepdims=True) * 1e4).astype(np.float32)
    err = _raises_and_writes_nothing(write_h5ad(X), NonIntegerCountsError, r"looks log-normalised")
    assert "normalize_total/log1p" in str(err)


def test_empty_cells(write_h5ad):
    X = np.ones((20, 10), dtype=np.float32)
    X[[4, 7]] = 0
    _raises_and_writes_nothing(
        write_h5ad(X), EmptyCellsError, r"2 cell\(s\) have zero counts, at rows 4, 7"
    )


def test_zero_cells(make_obs, write_h5ad):
    X = np.zeros((0, 10), dtype=np.float32)
    _raises_and_writes_nothing(write_h5ad(X, obs=make_obs(0)), EmptyCellsError, r"has no cells")


def test_duplicate_cell_ids(make_obs, write_h5ad):
    obs = make_obs(20)
    obs.index = [f"cell{i}" for i in range(19)] + ["cell5"]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # anndata warns about non-unique obs names
        path = write_h5ad(obs=obs)
    _raises_and_writes_nothing(
        path, DuplicateCellIdsError, r"1 duplicated cell id\(s\), e.g. 'cell5' at rows 5, 19"
    )


def test_missing_required_column(make_obs, write_h5ad):
    obs = make_obs(20).drop(columns=["donor_id"])
    _raises_and_writes_nothing(write_h5ad(obs=obs), MissingMetadataError, r"'donor_id' are missing")


def test_missing_values_in_required_column(make_obs, write_h5ad):
    obs = make_obs(20)
    obs.loc["cell11", "tissue_ontology_term_id"] = ""
    _raises_and_writes_nothing(
        write_h5ad(obs=obs),
        MissingMetadataError,
        r"'tissue_ontology_term_id' is empty for cell 'cell11' \(row 11\)",
    )


def test_query_datasets_need_no_metadata(make_obs, write_h5ad):
    path = write_h5ad(obs=make_obs(20).iloc[:, :0])
    assert validate_dataset(path, vocabulary=VOCAB, required_obs=()).n_cells == 20


def test_cellxgenes_unknown_cell_type_is_valid_but_an_unknown_tissue_is_not(make_obs, write_h5ad):
    obs = make_obs(20)
    obs["cell_type_ontology_term_id"] = obs["cell_type_ontology_term_id"].astype(str)
    obs.loc[["cell3", "cell7"], "cell_type_ontology_term_id"] = "unknown"
    report = validate_dataset(write_h5ad(obs=obs), vocabulary=VOCAB)
    assert "unknown" not in report.terms["cell_type_ontology_term_id"]
    obs.loc["cell5", "tissue_ontology_term_id"] = "unknown"
    _raises_and_writes_nothing(
        write_h5ad(obs=obs), MissingMetadataError, r"'tissue_ontology_term_id' is empty"
    )


def test_metadata_defaults_fill_missing_columns_and_are_checked(make_obs, write_h5ad):
    path = write_h5ad(obs=make_obs(20).drop(columns=["tissue_ontology_term_id"]))
    lung = {"tissue_ontology_term_id": "UBERON:0002048"}
    report = validate_dataset(path, vocabulary=VOCAB, defaults=lung)
    assert report.terms["tissue_ontology_term_id"] == ["UBERON:0002048"]
    with pytest.raises(UnknownTermError, match="UBERON:9999999"):
        validate_dataset(
            path, vocabulary=VOCAB, defaults={"tissue_ontology_term_id": "UBERON:9999999"}
        )
    with pytest.raises(MissingMetadataError, match="tissue_ontology_term_id"):
        validate_dataset(path, vocabulary=VOCAB)


def test_unknown_term(make_obs, write_h5ad):
    obs = make_obs(20)
    obs["cell_type_ontology_term_id"] = "CL:9999999"
    _raises_and_writes_nothing(
        write_h5ad(obs=obs),
        UnknownTermError,
        r"'cell_type_ontology_term_id' has 'CL:9999999', which is not a known cell_type term",
    )


def test_malformed_term(make_obs, write_h5ad):
    obs = make_obs(20)
    obs["cell_type_ontology_term_id"] = "B cells"
    _raises_and_writes_nothing(write_h5ad(obs=obs), UnknownTermError, r"'B cells'.*mapping file")


def test_term_of_the_wrong_kind(make_obs, write_h5ad):
    obs = make_obs(20)
    obs["cell_type_ontology_term_id"] = "UBERON:0002048"
    _raises_and_writes_nothing(
        write_h5ad(obs=obs), UnknownTermError, r"a tissue term, where a cell_type term belongs"
    )


def test_obsolete_term(make_obs, write_h5ad):
    obs = make_obs(20)
    obs["disease_ontology_term_id"] = "MONDO:0008345"  # obsolete idiopathic pulmonary fibrosis
    _raises_and_writes_nothing(
        write_h5ad(obs=obs), ObsoleteTermError, r"obsolete term 'MONDO:0008345'"
    )


def test_insufficient_gene_overlap(write_h5ad):
    genes = ["CD3E", "FOO1", "FOO2", "FOO3", "FOO4", "FOO5", "FOO6", "FOO7", "FOO8", "FOO9"]
    _raises_and_writes_nothing(
        write_h5ad(var_names=genes),
        InsufficientGeneOverlapError,
        r"only 1 of the model's 10 genes were found",
    )


def test_mouse_file_for_a_human_model(write_h5ad):
    genes = [f"ENSMUSG{i:011d}" for i in range(10)]
    _raises_and_writes_nothing(
        write_h5ad(var_names=genes), WrongSpeciesError, r"10 of 10 genes are mouse Ensembl ids"
    )


def test_truncated_file(write_h5ad, tmp_path: Path):
    path = write_h5ad()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    _raises_and_writes_nothing(path, UnreadableFileError, r"input.h5ad")
