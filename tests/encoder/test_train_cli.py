"""``cellsearch train``: a reference as it comes (files, a folder, study per file or column)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
from training_kit import toy_atlas

from celldata.errors import UnreadableFileError
from celldata.reference import read_reference
from cellsearch.app.cli import main
from encoder import CellEncoder


def _write_per_study(adata: ad.AnnData, folder, *, keep_column: bool) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for study in sorted(set(adata.obs["study_id"])):
        part = adata[adata.obs["study_id"] == study].copy()
        if not keep_column:
            del part.obs["study_id"]
        path = folder / f"{study}.h5ad"
        part.write_h5ad(path)
        paths.append(path)
    return paths


def test_a_folder_of_files_is_one_reference_with_a_study_per_file(tmp_path):
    adata = toy_atlas(n_per=10)
    _write_per_study(adata, tmp_path / "ref", keep_column=False)
    ref, report = read_reference([tmp_path / "ref"])
    assert ref.n_obs == adata.n_obs
    assert report.studies == ["s0", "s1", "s2", "s3"]
    assert set(report.study_source.values()) == {"file name"}
    np.testing.assert_array_equal(ref.X.sum(), adata.X.sum())


def test_files_keep_their_study_column_and_share_genes(tmp_path):
    adata = toy_atlas(n_per=10)
    paths = _write_per_study(adata, tmp_path, keep_column=True)
    # One file lacks the last 10 genes: the reference keeps the genes every file measures.
    short = ad.read_h5ad(paths[0])[:, :110].copy()
    short.write_h5ad(paths[0])
    ref, report = read_reference(paths)
    assert ref.n_vars == 110
    assert "every file" in report.gene_rule
    assert set(report.study_source.values()) == {"column"}
    assert ref.obs_names.is_unique


def test_log_normalised_files_are_refused_as_ingestion_refuses_them(tmp_path):
    adata = toy_atlas(n_per=5)
    adata.X = sp.csr_matrix(np.log1p(adata.X.toarray()))
    adata.write_h5ad(tmp_path / "lognorm.h5ad")
    with pytest.raises(Exception, match="raw counts"):
        read_reference([tmp_path / "lognorm.h5ad"])
    with pytest.raises(UnreadableFileError, match="no such file"):
        read_reference([tmp_path / "missing.h5ad"])


@pytest.mark.slow
def test_cellsearch_train_writes_a_model_and_a_summary(tmp_path, capsys):
    adata = toy_atlas(n_per=30)
    _write_per_study(adata, tmp_path / "ref", keep_column=True)
    out = tmp_path / "model"
    code = main(
        ["train", str(tmp_path / "ref"), "-o", str(out), "--epochs", "2", "--val-study", "s3"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "reference: 360 cells, 4 studies, 3 cell types" in printed
    assert "held-out studies s3: macro-F1" in printed
    model = CellEncoder.load(out)
    assert model.training["val_studies"] == ["s3"]
    assert model.training["best_epoch"] >= 1
    assert model.training["refit_epochs"] == 0  # the recipe keeps the best held-out epoch
    assert model.embed(adata).shape == (adata.n_obs, model.embedding_dim)
