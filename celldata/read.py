"""Streaming reads: CSR chunks of cells with their metadata, in flat memory.

A backed ``.h5ad`` is read straight through h5py: for a CSR matrix a chunk of rows is one
slice of ``indptr`` and one contiguous slice of ``data``/``indices``, and obs columns are
sliced per chunk too (categorical codes, string arrays), so a 10-million-cell file never
sits in memory. 10x ``.h5`` files stream the same way (their CSC genes x cells matrix is a
CSR cells x genes one). Matrix Market folders are read whole: the format has no index.

Raw counts may live in ``X``, ``layers["counts"]`` or ``.raw``; ``counts="auto"`` applies the
platform's one rule (:mod:`celldata.counts`): the first of ``layers/counts``, ``raw``, ``X``
whose sampled values are non-negative integers.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import h5py
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp

from celldata.counts import COUNTS_ORDER, choose_counts_location, looks_like_counts
from celldata.errors import NotRawCountsError, UnreadableFileError

CountsLocation = Literal["auto", "X", "layers/counts", "raw"]
FileFormat = Literal["h5ad", "10x_h5", "mtx"]
_H5AD_LOCATIONS: tuple[str, ...] = COUNTS_ORDER
_SAMPLE_NNZ = 200_000


@dataclass
class CellChunk:
    """``X`` rows ``start:start+n`` of the file: raw counts (float32 CSR) and their obs."""

    X: sp.csr_matrix
    obs: pd.DataFrame
    var_names: pd.Index
    start: int

    @property
    def n_cells(self) -> int:
        return int(self.X.shape[0])


@dataclass
class DatasetInfo:
    """What a file holds, read without loading its matrix."""

    path: Path
    format: FileFormat
    n_cells: int
    n_genes: int
    var_names: pd.Index
    obs_columns: list[str]
    counts_location: str
    """Where raw counts were found (``X``, ``layers/counts``, ``raw``); ``""`` if nowhere."""
    locations: list[str] = field(default_factory=list)
    """Every matrix location present in the file."""


# ---------------------------------------------------------------------------- formats


def detect_format(path: Path) -> FileFormat:
    """Tell an .h5ad, a 10x .h5 and a Matrix Market folder apart, or raise UnreadableFileError."""
    path = Path(path)
    if not path.exists():
        msg = f"{path} does not exist; check the path (it must be readable by the service)"
        raise UnreadableFileError(msg)
    if path.is_dir():
        if _mtx_files(path) is None:
            msg = (
                f"{path} is a folder without matrix.mtx(.gz), features.tsv/genes.tsv(.gz) and "
                "barcodes.tsv(.gz); send an .h5ad, a 10x .h5, or a complete Matrix Market folder"
            )
            raise UnreadableFileError(msg)
        return "mtx"
    try:
        with h5py.File(path, "r") as f:
            if "matrix" in f and "barcodes" in f["matrix"]:
                return "10x_h5"
            if any(isinstance(g, h5py.Group) and "barcodes" in g for g in f.values()):
                return "10x_h5"
            if "obs" in f and "var" in f:
                return "h5ad"
    except (OSError, KeyError, ValueError) as exc:
        msg = (
            f"{path} cannot be opened as HDF5 ({exc}); the file is truncated, corrupt, or not "
            "an .h5ad/.h5 file. Re-export or re-upload it"
        )
        raise UnreadableFileError(msg) from exc
    msg = (
        f"{path} is HDF5 but neither an AnnData .h5ad (no obs/var groups) nor a 10x .h5 "
        "(no matrix/barcodes); write it with anndata's write_h5ad"
    )
    raise UnreadableFileError(msg)


def _mtx_files(folder: Path) -> tuple[Path, Path, Path] | None:
    def first(*names: str) -> Path | None:
        for name in names:
            for candidate in (folder / name, folder / f"{name}.gz"):
                if candidate.exists():
                    return candidate
        return None

    matrix = first("matrix.mtx")
    features = first("features.tsv", "genes.tsv")
    barcodes = first("barcodes.tsv")
    if matrix is None or features is None or barcodes is None:
        return None
    return matrix, features, barcodes


def _decode(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind in ("S", "O"):
        return np.array(
            [v.decode() if isinstance(v, bytes) else str(v) for v in values], dtype=object
        )
    return values


# ---------------------------------------------------------------------------- h5ad


def _matrix_element(f: h5py.File, location: str) -> h5py.Group | h5py.Dataset | None:
    key = "raw/X" if location == "raw" else location
    return f.get(key)


def _element_shape(elem: h5py.Group | h5py.Dataset) -> tuple[int, int]:
    if isinstance(elem, h5py.Dataset):
        return int(elem.shape[0]), int(elem.shape[1])
    shape = elem.attrs["shape"]
    return int(shape[0]), int(shape[1])


def _index_of(group: h5py.Group) -> pd.Index:
    key = group.attrs.get("_index", "_index")
    return pd.Index(_decode(group[key][()]))


def _read_rows(elem: h5py.Group | h5py.Dataset, start: int, stop: int) -> sp.csr_matrix:
    """Rows ``start:stop`` as float32 CSR, reading only those rows for CSR and dense."""
    if isinstance(elem, h5py.Dataset):
        return sp.csr_matrix(np.asarray(elem[start:stop], dtype=np.float32))
    encoding = elem.attrs.get("encoding-type", "csr_matrix")
    n_genes = int(elem.attrs["shape"][1])
    if encoding == "csr_matrix":
        indptr = elem["indptr"][start : stop + 1].astype(np.int64)
        if len(indptr) != stop - start + 1:
            msg = (
                f"the count matrix is corrupt: it declares {elem.attrs['shape'][0]} cells but "
                f"has row pointers for {len(elem['indptr']) - 1}; re-export the file"
            )
            raise UnreadableFileError(msg)
        lo, hi = int(indptr[0]), int(indptr[-1])
        data = elem["data"][lo:hi].astype(np.float32, copy=False)
        indices = elem["indices"][lo:hi]
        return _checked_csr(data, indices, indptr - lo, (stop - start, n_genes), start)
    # CSC (or anything else anndata knows): let anndata slice it; rows of CSC are not contiguous.
    from anndata.io import sparse_dataset

    return sp.csr_matrix(sparse_dataset(elem)[start:stop], dtype=np.float32)


def _checked_csr(
    data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, shape: tuple[int, int], start: int
) -> sp.csr_matrix:
    """A CSR chunk whose structure is sound, else :class:`UnreadableFileError`.

    A corrupt ``indptr`` (decreasing, or past ``data``) or a gene index out of range used to
    pass validation and crash the process in compiled code (a segfault, found by the fuzz
    test in tests/stress/test_fuzz.py); O(nnz) per chunk.
    """
    n_rows, n_genes = shape
    problem = ""
    if len(indptr) != n_rows + 1 or indptr[0] != 0 or (np.diff(indptr) < 0).any():
        problem = "its row pointers (indptr) are not increasing"
    elif int(indptr[-1]) != len(data) or len(indices) != len(data):
        problem = "its row pointers (indptr) do not match its values"
    elif len(indices) and (int(indices.min()) < 0 or int(indices.max()) >= n_genes):
        problem = "a gene index lies outside the gene list"
    if problem:
        msg = (
            f"the count matrix is corrupt at cells {start}-{start + n_rows - 1}: {problem}; "
            "re-export the file (anndata's write_h5ad)"
        )
        raise UnreadableFileError(msg, details={"row": start})
    return sp.csr_matrix((data, indices, indptr), shape=shape)


def _sample_values(elem: h5py.Group | h5py.Dataset, n_cells: int) -> np.ndarray:
    """Stored values from a few row windows spread over the file (cheap)."""
    if n_cells == 0:
        return np.zeros(0, dtype=np.float32)
    starts = np.unique(np.linspace(0, max(n_cells - 1, 0), num=min(5, n_cells)).astype(int))
    window = max(1, min(200, n_cells // len(starts)))
    parts = []
    for s in starts:
        rows = _read_rows(elem, int(s), int(min(n_cells, s + window)))
        parts.append(rows.data[:_SAMPLE_NNZ])
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def _pick_location(f: h5py.File, requested: CountsLocation, path: Path) -> tuple[str, list[str]]:
    present = [loc for loc in _H5AD_LOCATIONS if _matrix_element(f, loc) is not None]
    if requested != "auto":
        if requested not in present:
            msg = (
                f"{path} has no {requested!r} matrix (present: {', '.join(present) or 'none'}); "
                "pass counts='auto' or the location that holds raw counts"
            )
            raise NotRawCountsError(msg, details={"location": requested})
        return requested, present

    def holds_counts(loc: str) -> bool:
        elem = _matrix_element(f, loc)
        assert elem is not None
        return looks_like_counts(_sample_values(elem, _element_shape(elem)[0]))

    return choose_counts_location(present, holds_counts), present


def _var_names_for(f: h5py.File, location: str) -> pd.Index:
    if location == "raw" and "raw/var" in f:
        return _index_of(f["raw/var"])
    return _index_of(f["var"])


class _ObsSlicer:
    """Reads rows ``start:stop`` of each obs column without loading whole columns."""

    def __init__(self, group: h5py.Group) -> None:
        self.group = group
        self.index_key = group.attrs.get("_index", "_index")
        order = group.attrs.get("column-order", [])
        self.columns = [str(c) for c in np.atleast_1d(order)] if len(order) else []
        self._categories: dict[str, np.ndarray] = {}
        self._whole: dict[str, pd.Series] = {}

    def _column(self, name: str, start: int, stop: int) -> object:
        elem = self.group[name]
        encoding = elem.attrs.get("encoding-type", "")
        if encoding == "categorical":
            if name not in self._categories:
                self._categories[name] = _decode(elem["categories"][()])
            codes = elem["codes"][start:stop]
            return pd.Categorical.from_codes(
                codes,
                categories=self._categories[name],
                ordered=bool(elem.attrs.get("ordered", False)),
            )
        if isinstance(elem, h5py.Dataset):
            return _decode(elem[start:stop])
        if encoding in ("nullable-integer", "nullable-boolean"):
            values = elem["values"][start:stop]
            mask = elem["mask"][start:stop]
            dtype = "Int64" if encoding == "nullable-integer" else "boolean"
            return pd.array(np.where(mask, 0, values), dtype=dtype).where(~mask)
        # Unknown encodings: read once through anndata and slice.
        if name not in self._whole:
            from anndata.io import read_elem

            self._whole[name] = pd.Series(read_elem(elem))
        return self._whole[name].iloc[start:stop].to_numpy()

    def read(self, start: int, stop: int) -> pd.DataFrame:
        index = pd.Index(_decode(self.group[self.index_key][start:stop]), name=None)
        data = {name: self._column(name, start, stop) for name in self.columns}
        return pd.DataFrame(data, index=index)


def _check_consistent(
    path: Path,
    elem: h5py.Group | h5py.Dataset,
    n_cells: int,
    n_genes: int,
    obs: _ObsSlicer,
    var_names: pd.Index,
) -> None:
    """The matrix's declared shape agrees with obs, var and its own row pointers.

    A wrong ``shape`` attribute used to drop the last cells silently or end in an index
    error (tests/stress/test_fuzz.py).
    """
    n_obs = len(obs.group[obs.index_key])
    rows = n_cells
    if isinstance(elem, h5py.Group) and elem.attrs.get("encoding-type") == "csr_matrix":
        rows = len(elem["indptr"]) - 1
    if n_obs != n_cells or rows != n_cells or len(var_names) != n_genes:
        msg = (
            f"{path} is inconsistent: its matrix declares {n_cells} cells x {n_genes} genes, "
            f"but obs has {n_obs} cells, the matrix rows {rows} and var {len(var_names)} "
            "genes; the file is damaged or was edited by hand. Re-export it (write_h5ad)"
        )
        raise UnreadableFileError(msg)


def _info_h5ad(path: Path, counts: CountsLocation) -> DatasetInfo:
    with h5py.File(path, "r") as f:
        location, present = _pick_location(f, counts, path)
        shape_from = _matrix_element(f, location or (present[0] if present else "X"))
        if shape_from is None:
            msg = f"{path} has no expression matrix (no X, layers/counts or raw/X)"
            raise UnreadableFileError(msg)
        n_cells, n_genes = _element_shape(shape_from)
        var_names = _var_names_for(f, location or present[0])
        obs_slicer = _ObsSlicer(f["obs"])
        obs_columns = obs_slicer.columns
        _check_consistent(path, shape_from, n_cells, n_genes, obs_slicer, var_names)
    return DatasetInfo(
        path=path,
        format="h5ad",
        n_cells=n_cells,
        n_genes=n_genes,
        var_names=var_names,
        obs_columns=obs_columns,
        counts_location=location,
        locations=present,
    )


# ---------------------------------------------------------------------------- 10x h5


def _tenx_group(f: h5py.File) -> tuple[h5py.Group, pd.Index]:
    if "matrix" in f:
        group = f["matrix"]
        features = group["features"]
        names = features["name"] if "name" in features else features["id"]
        return group, pd.Index(_decode(names[()]))
    for group in f.values():  # legacy v2: one group per genome
        if isinstance(group, h5py.Group) and "barcodes" in group:
            key = "gene_names" if "gene_names" in group else "genes"
            return group, pd.Index(_decode(group[key][()]))
    msg = "10x .h5 without a matrix group"
    raise UnreadableFileError(msg)


def _tenx_rows(group: h5py.Group, start: int, stop: int, n_genes: int) -> sp.csr_matrix:
    indptr = group["indptr"][start : stop + 1].astype(np.int64)
    lo, hi = int(indptr[0]), int(indptr[-1])
    data = group["data"][lo:hi].astype(np.float32)
    indices = group["indices"][lo:hi]
    return _checked_csr(data, indices, indptr - lo, (stop - start, n_genes), start)


# ---------------------------------------------------------------------------- mtx


def _read_tsv_first_col(path: Path, column: int = 0) -> pd.Index:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        rows = [line.rstrip("\n").split("\t") for line in handle if line.strip()]
    return pd.Index([r[column] if len(r) > column else r[0] for r in rows])


def _read_mtx(folder: Path) -> tuple[sp.csr_matrix, pd.Index, pd.Index]:
    files = _mtx_files(folder)
    assert files is not None
    matrix_path, features_path, barcodes_path = files
    try:
        matrix = scipy.io.mmread(str(matrix_path))
        genes = _read_tsv_first_col(features_path, column=1)
        barcodes = _read_tsv_first_col(barcodes_path)
    except (OSError, ValueError, EOFError) as exc:
        msg = f"{folder}: the Matrix Market files cannot be parsed ({exc}); re-export them"
        raise UnreadableFileError(msg) from exc
    X = sp.csr_matrix(matrix.T, dtype=np.float32)  # Matrix Market from 10x is genes x cells
    if X.shape != (len(barcodes), len(genes)):
        msg = (
            f"{folder}: matrix is {matrix.shape[0]} x {matrix.shape[1]} but there are "
            f"{len(genes)} features and {len(barcodes)} barcodes; the files do not belong together"
        )
        raise UnreadableFileError(msg)
    return X, genes, barcodes


# ---------------------------------------------------------------------------- public


def read_metadata(path: Path, *, counts: CountsLocation = "auto") -> DatasetInfo:
    """Shape, genes, obs columns and where raw counts live, without reading the matrix."""
    path = Path(path)
    fmt = detect_format(path)
    try:
        if fmt == "h5ad":
            return _info_h5ad(path, counts)
        if fmt == "10x_h5":
            with h5py.File(path, "r") as f:
                group, genes = _tenx_group(f)
                n_cells = len(group["barcodes"])
            return DatasetInfo(path, fmt, n_cells, len(genes), genes, [], "X", ["X"])
        X, genes, _ = _read_mtx(path)
        return DatasetInfo(path, fmt, X.shape[0], X.shape[1], genes, [], "X", ["X"])
    except (OSError, KeyError) as exc:
        msg = f"{path} is truncated or damaged ({exc}); re-export or re-upload it"
        raise UnreadableFileError(msg) from exc


def iter_chunks(
    path: Path,
    *,
    chunk_size: int = 8192,
    counts: CountsLocation = "auto",
    start: int = 0,
    stop: int | None = None,
) -> Iterator[CellChunk]:
    """Yield consecutive :class:`CellChunk` s of at most ``chunk_size`` cells (raw counts).

    Memory stays flat for .h5ad and 10x .h5 (one chunk at a time). Raises
    :class:`NotRawCountsError` when no matrix holds raw counts under ``counts="auto"`` and
    :class:`UnreadableFileError` when the file is damaged, even part-way through.
    """
    if chunk_size < 1:
        msg = f"chunk_size must be >= 1, got {chunk_size}"
        raise ValueError(msg)
    path = Path(path)
    info = read_metadata(path, counts=counts)
    if not info.counts_location:
        msg = (
            f"{path}: none of {', '.join(info.locations)} holds raw counts (sampled values are "
            "negative or non-integer, e.g. log-normalised). Put the raw UMI counts in X, "
            "layers['counts'] or .raw"
        )
        raise NotRawCountsError(msg, details={"locations": info.locations})
    end = info.n_cells if stop is None else min(stop, info.n_cells)
    try:
        if info.format == "mtx":
            X, genes, barcodes = _read_mtx(path)
            for s in range(start, end, chunk_size):
                e = min(end, s + chunk_size)
                obs = pd.DataFrame(index=pd.Index(barcodes[s:e]))
                yield CellChunk(X[s:e], obs, genes, s)
            return
        with h5py.File(path, "r") as f:
            if info.format == "10x_h5":
                group, genes = _tenx_group(f)
                barcodes = group["barcodes"]
                for s in range(start, end, chunk_size):
                    e = min(end, s + chunk_size)
                    obs = pd.DataFrame(index=pd.Index(_decode(barcodes[s:e])))
                    yield CellChunk(_tenx_rows(group, s, e, len(genes)), obs, genes, s)
                return
            elem = _matrix_element(f, info.counts_location)
            assert elem is not None
            obs_slicer = _ObsSlicer(f["obs"])
            for s in range(start, end, chunk_size):
                e = min(end, s + chunk_size)
                yield CellChunk(_read_rows(elem, s, e), obs_slicer.read(s, e), info.var_names, s)
    except (OSError, KeyError) as exc:
        msg = f"{path} is truncated or damaged ({exc}); re-export or re-upload it"
        raise UnreadableFileError(msg) from exc


def read_whole(path: Path, *, counts: CountsLocation = "auto") -> CellChunk:
    """The whole file as one chunk (small files, and the baseline the benchmark compares to)."""
    info = read_metadata(path, counts=counts)
    return next(iter_chunks(path, chunk_size=max(1, info.n_cells), counts=counts))
