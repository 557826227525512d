"""Input handling: gene alignment, log-normalisation on sparse matrices, batching.

Everything stays sparse: a cell expresses a few thousand of ~28,000 genes, so a
dense copy of a batch costs ten times the memory and the time of the maths that
follows. Alignment is delegated to ``celldata.genes.align_genes`` (one rule for
the whole platform: zero-fill missing genes, refuse below an overlap threshold).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

DEFAULT_TARGET_SUM = 1e4
DEFAULT_MIN_OVERLAP = 0.5


def to_csr(x: Any) -> sp.csr_matrix:
    """Any 2-D matrix (dense, COO/CSC/CSR, anndata sparse dataset) as float32 CSR."""
    if isinstance(x, sp.csr_matrix):
        out = x
    elif sp.issparse(x):
        out = sp.csr_matrix(x)
    elif hasattr(x, "to_memory"):  # anndata backed sparse dataset
        out = sp.csr_matrix(x.to_memory())
    else:
        arr = np.asarray(x)
        if arr.ndim != 2:
            msg = f"expected a 2-D cells x genes matrix, got shape {arr.shape}"
            raise ValueError(msg)
        out = sp.csr_matrix(arr)
    if out.dtype != np.float32:
        out = out.astype(np.float32)
    return out


def log_normalize(x: sp.csr_matrix, target_sum: float = DEFAULT_TARGET_SUM) -> sp.csr_matrix:
    """Scale each cell to ``target_sum`` counts, then log1p, without densifying.

    Cells with no counts stay all-zero (no division by zero). Returns a new
    float32 CSR matrix; the input is not modified.
    """
    x = to_csr(x)
    totals = np.asarray(x.sum(axis=1), dtype=np.float64).ravel()
    if np.any(x.data < 0):
        msg = "negative values in the expression matrix: expected raw counts (normalized=False)"
        raise ValueError(msg)
    scale = np.divide(target_sum, totals, out=np.zeros_like(totals), where=totals > 0)
    counts_per_row = np.diff(x.indptr)
    data = x.data.astype(np.float64) * np.repeat(scale, counts_per_row)
    out = sp.csr_matrix(
        (np.log1p(data).astype(np.float32), x.indices.copy(), x.indptr.copy()), shape=x.shape
    )
    out.has_sorted_indices = x.has_sorted_indices
    return out


class GeneAligner:
    """Map inputs whose columns are ``gene_names`` onto the model's gene order.

    Identity when the names already match the model order (no copy, no check
    beyond equality); otherwise uses celldata's aligner, which zero-fills
    missing genes and raises ``InsufficientGeneOverlapError`` below
    ``min_overlap``.
    """

    def __init__(
        self,
        model_genes: Sequence[str],
        gene_names: Sequence[str] | None,
        *,
        min_overlap: float = DEFAULT_MIN_OVERLAP,
    ) -> None:
        self.model_genes = list(model_genes)
        self._alignment = None
        if gene_names is not None and list(gene_names) != self.model_genes:
            from celldata.genes import align_genes

            self._alignment = align_genes(
                list(gene_names), self.model_genes, min_overlap=min_overlap
            )

    @property
    def identity(self) -> bool:
        """True when inputs are already in model order."""
        return self._alignment is None

    def apply(self, x: sp.csr_matrix) -> sp.csr_matrix:
        """Aligned float32 CSR with exactly ``len(model_genes)`` columns."""
        if self._alignment is not None:
            x = to_csr(self._alignment.apply(x))
        if x.shape[1] != len(self.model_genes):
            msg = (
                f"input has {x.shape[1]} genes but the model expects {len(self.model_genes)}; "
                "pass gene_names= so the columns can be aligned to the model's gene order"
            )
            raise ValueError(msg)
        return x


def _is_anndata(data: Any) -> bool:
    return hasattr(data, "obs") and hasattr(data, "var_names") and hasattr(data, "X")


def _is_chunk_iterable(data: Any) -> bool:
    return not sp.issparse(data) and not isinstance(data, np.ndarray) and not _is_anndata(data)


def iter_raw_blocks(
    data: Any,
    gene_names: Sequence[str] | None,
    batch_size: int,
    *,
    layer: str | None = None,
    check_counts: bool = True,
) -> Iterator[tuple[sp.csr_matrix, Sequence[str] | None]]:
    """Yield ``(csr block of at most batch_size cells, its gene names)`` from any input.

    AnnData objects in backed mode are read slice by slice, so a file larger
    than memory streams through; chunk iterators (``celldata.read.iter_chunks``)
    are consumed lazily and re-split to ``batch_size``. An AnnData's counts are
    found by the platform's one rule (``celldata.counts.counts_of``: ``layers["counts"]``,
    else ``.raw``, else ``X``; ``layer=`` to choose); with ``check_counts`` a matrix
    that is not raw counts is refused with ingestion's message.
    """
    from celldata.counts import check_counts as refuse_non_counts
    from celldata.counts import counts_of

    if _is_anndata(data):
        counts = counts_of(data, layer) if check_counts else None
        matrix = data.X if counts is None else counts.matrix
        own = list(data.var_names) if counts is None else counts.var_names
        names = list(gene_names) if gene_names is not None else own
        n = data.n_obs
        for start in range(0, n, batch_size):
            yield to_csr(matrix[start : start + batch_size]), names
        return
    if sp.issparse(data) or isinstance(data, np.ndarray):
        if check_counts:
            refuse_non_counts(data, where="the input matrix", location="X")
        x = to_csr(data)
        for start in range(0, x.shape[0], batch_size):
            yield x[start : start + batch_size], gene_names
        return
    if not isinstance(data, Iterable):
        msg = (
            f"cannot embed {type(data).__name__}: pass an AnnData, a scipy CSR matrix, "
            "a numpy array or an iterable of celldata CellChunk"
        )
        raise TypeError(msg)
    for chunk in data:
        names = list(gene_names) if gene_names is not None else list(chunk.var_names)
        x = to_csr(chunk.X)
        for start in range(0, x.shape[0], batch_size):
            yield x[start : start + batch_size], names
