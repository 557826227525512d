from __future__ import annotations

import gzip
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp

from celldata.errors import NotRawCountsError, UnreadableFileError
from celldata.read import iter_chunks, read_metadata, read_whole


def test_streamed_chunks_equal_the_whole_file(atlas_file: Path):
    whole = ad.read_h5ad(atlas_file)
    chunks = list(iter_chunks(atlas_file, chunk_size=128))
    assert [c.start for c in chunks] == [0, 128, 256, 384, 512]
    X = sp.vstack([c.X for c in chunks])
    assert X.dtype == np.float32
    assert (X != whole.X).nnz == 0
    obs = pd.concat([c.obs for c in chunks])
    pd.testing.assert_frame_equal(obs, whole.obs, check_categorical=False)
    assert list(chunks[0].var_names) == list(whole.var_names)


def test_metadata_without_reading_the_matrix(atlas_file: Path):
    info = read_metadata(atlas_file)
    assert (info.n_cells, info.n_genes, info.format, info.counts_location) == (
        600,
        2000,
        "h5ad",
        "X",
    )
    assert "cell_type_ontology_term_id" in info.obs_columns


def test_auto_finds_counts_in_layers_and_raw(tmp_path: Path):
    rng = np.random.default_rng(0)
    counts = rng.poisson(2.0, (30, 6)).astype(np.float32) + 1
    logn = np.log1p(counts / counts.sum(1, keepdims=True) * 1e4)
    genes = ["CD3E", "CD14", "LYZ", "MS4A1", "NKG7", "GNLY"]
    a = ad.AnnData(X=sp.csr_matrix(logn), var=pd.DataFrame(index=genes))
    a.layers["counts"] = sp.csr_matrix(counts)
    a.write_h5ad(tmp_path / "layers.h5ad")
    chunk = read_whole(tmp_path / "layers.h5ad")
    np.testing.assert_array_equal(chunk.X.toarray(), counts)

    b = ad.AnnData(X=sp.csr_matrix(counts), var=pd.DataFrame(index=genes))
    b.raw = b
    b.X = sp.csr_matrix(logn)
    b.write_h5ad(tmp_path / "raw.h5ad")
    assert read_metadata(tmp_path / "raw.h5ad").counts_location == "raw"
    np.testing.assert_array_equal(read_whole(tmp_path / "raw.h5ad").X.toarray(), counts)


def test_dense_x_is_read_as_csr(tmp_path: Path):
    counts = np.arange(12, dtype=np.float32).reshape(4, 3)
    ad.AnnData(X=counts, var=pd.DataFrame(index=["CD3E", "CD14", "LYZ"])).write_h5ad(
        tmp_path / "dense.h5ad"
    )
    chunks = list(iter_chunks(tmp_path / "dense.h5ad", chunk_size=3))
    assert [c.n_cells for c in chunks] == [3, 1]
    np.testing.assert_array_equal(sp.vstack([c.X for c in chunks]).toarray(), counts)


def test_no_raw_counts_anywhere_is_refused(tmp_path: Path):
    X = np.log1p(np.arange(1, 13, dtype=np.float32).reshape(4, 3))
    ad.AnnData(X=X, var=pd.DataFrame(index=["CD3E", "CD14", "LYZ"])).write_h5ad(tmp_path / "l.h5ad")
    with pytest.raises(NotRawCountsError, match=r"none of X holds raw counts"):
        next(iter_chunks(tmp_path / "l.h5ad"))


def _write_10x_h5(path: Path, counts: np.ndarray, genes: list[str], barcodes: list[str]) -> None:
    csc = sp.csc_matrix(counts.T)  # genes x cells, CSC like Cell Ranger
    with h5py.File(path, "w") as f:
        m = f.create_group("matrix")
        m["data"], m["indices"], m["indptr"] = csc.data.astype(np.int32), csc.indices, csc.indptr
        m["shape"] = np.array(csc.shape)
        m["barcodes"] = np.array(barcodes, dtype="S")
        feats = m.create_group("features")
        feats["id"] = np.array([f"ENSG{i:011d}" for i in range(len(genes))], dtype="S")
        feats["name"] = np.array(genes, dtype="S")
        feats["feature_type"] = np.array(["Gene Expression"] * len(genes), dtype="S")


def test_10x_h5_streams(tmp_path: Path):
    rng = np.random.default_rng(2)
    counts = rng.poisson(1.0, (25, 4)).astype(np.float32)
    _write_10x_h5(tmp_path / "f.h5", counts, ["CD3E", "CD14", "LYZ", "MS4A1"],
                  [f"AAAC-{i}" for i in range(25)])  # fmt: skip
    chunks = list(iter_chunks(tmp_path / "f.h5", chunk_size=10))
    assert read_metadata(tmp_path / "f.h5").format == "10x_h5"
    np.testing.assert_array_equal(sp.vstack([c.X for c in chunks]).toarray(), counts)
    assert chunks[2].obs.index[0] == "AAAC-20"
    assert list(chunks[0].var_names) == ["CD3E", "CD14", "LYZ", "MS4A1"]


def test_matrix_market_folder(tmp_path: Path):
    counts = np.array([[1, 0, 2], [0, 3, 0]], dtype=np.float32)
    folder = tmp_path / "mtx"
    folder.mkdir()
    scipy.io.mmwrite(str(folder / "matrix.mtx"), sp.coo_matrix(counts.T))
    with gzip.open(folder / "features.tsv.gz", "wt") as f:
        for i, gene in enumerate(["CD3E", "CD14", "LYZ"]):
            f.write(f"ENSG{i}\t{gene}\tGene Expression\n")
    (folder / "barcodes.tsv").write_text("AAA-1\nCCC-1\n")
    chunk = read_whole(folder)
    np.testing.assert_array_equal(chunk.X.toarray(), counts)
    assert list(chunk.var_names) == ["CD3E", "CD14", "LYZ"]
    assert list(chunk.obs.index) == ["AAA-1", "CCC-1"]


def test_truncated_file_is_unreadable(atlas_file: Path, tmp_path: Path):
    data = atlas_file.read_bytes()
    bad = tmp_path / "truncated.h5ad"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        UnreadableFileError, match=r"truncated.h5ad.*(truncated|damaged|cannot be opened)"
    ) as err:
        for _ in iter_chunks(bad, chunk_size=100):
            pass
    assert err.value.code == "unreadable_file"


def test_missing_path_and_bad_folder(tmp_path: Path):
    with pytest.raises(UnreadableFileError, match=r"does not exist"):
        read_metadata(tmp_path / "nope.h5ad")
    with pytest.raises(UnreadableFileError, match=r"matrix.mtx"):
        read_metadata(tmp_path)
    (tmp_path / "text.h5ad").write_text("not hdf5")
    with pytest.raises(UnreadableFileError, match=r"cannot be opened as HDF5"):
        read_metadata(tmp_path / "text.h5ad")
