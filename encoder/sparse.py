"""Inference without densifying the input: a sparse first layer, three ways.

Why not ``torch.sparse.mm`` or ``embedding_bag``: both walk the input cell by cell and
fetch one 4 KB weight row per non-zero from a 115 MB matrix, so they are memory-bound
(no faster than the dense product). The backends here, fastest first:

* ``"c"`` (:mod:`encoder.kernels`): the compiled micro-kernel. Non-zeros are bucketed
  by L2-sized gene blocks; each cell's 128 accumulators stay in vector registers while
  its non-zeros in a block stream past; the re-laid weights sit on huge pages. Used
  whenever the extension was built and the first layer is a multiple of 128 wide.
* ``"numba"``: the same tiling idea in numba (each thread regroups a block of cells
  gene-major and accumulates a (block x tile) buffer in cache). About half the C
  kernel's speed: numba cannot keep the accumulators in registers.
* ``"scipy"``: CSR @ dense weights, the fallback when neither is available.

Eval-mode BatchNorm of the first block is folded into the first Linear
(``W' = W * gamma / sqrt(var + eps)``), which leaves the result equal to the dense
path to float32 rounding (checked to 1e-5 in the tests for every backend).
"""

from __future__ import annotations

import copy
import functools
from typing import Protocol, cast

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from encoder import kernels
from encoder.data import log_normalize
from encoder.module import Encoder

try:  # numba ships with scanpy; without it the scipy product is the fallback
    import numba
    from numba import prange

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised only where numba is absent
    HAVE_NUMBA = False

DEFAULT_TILE = 128
DEFAULT_CELL_BLOCK = 128
MIN_DENSE_SPLIT_CELLS = 256  # below this a batch's gene counts say little
BACKENDS = ("c", "numba", "scipy")


class _BlockKernel(Protocol):
    """The compiled numba kernel of one tile width (see :func:`_kernel`)."""

    def __call__(
        self,
        indptr: np.ndarray,
        indices: np.ndarray,
        data: np.ndarray,
        scale: np.ndarray,
        wt: np.ndarray,
        out: np.ndarray,
        block: int,
        dense_col: np.ndarray,
        xd: np.ndarray,
    ) -> None: ...


@functools.lru_cache(maxsize=8)
def _kernel(tile: int) -> _BlockKernel:  # pragma: no cover - compiled code, run by SparseEmbedder
    """The block kernel for one tile width, a compile-time constant (closures cache on disk too)."""

    @numba.njit(parallel=True, fastmath=True, boundscheck=False, cache=True)
    def block_gene_major(
        indptr: np.ndarray,
        indices: np.ndarray,
        data: np.ndarray,
        scale: np.ndarray,
        wt: np.ndarray,
        out: np.ndarray,
        block: int,
        dense_col: np.ndarray,
        xd: np.ndarray,
    ) -> None:
        """out[r, :] = sum_g x[r, g] * W'[:, g] over the sparse genes; dense genes go to ``xd``.

        Each thread takes a block of ``block`` cells and regroups its non-zeros by
        gene (a small CSC of the block, absent genes skipped); then, for each tile
        of hidden units, accumulates into a (block, tile) buffer that stays in cache
        while each present gene's weight slice is read once. Genes with
        ``dense_col[g] >= 0`` are instead written to column ``dense_col[g]`` of the
        dense buffer ``xd`` (their product is one BLAS call, see ``first_layer``).
        With a non-empty ``scale`` (per-cell ``target_sum / total``) ``data`` holds
        raw counts and each is log-normalised as it is read (no separate pass).
        Compiled once and cached on disk (``cache=True``).
        """
        n_tiles, n_genes, _ = wt.shape
        n = indptr.size - 1
        n_blocks = (n + block - 1) // block
        raw = scale.size > 0
        for b in prange(n_blocks):
            r0 = b * block
            r1 = min(n, r0 + block)
            ptr = np.zeros(n_genes + 1, np.int32)
            m = 0
            for r in range(r0, r1):
                for k in range(indptr[r], indptr[r + 1]):
                    g = indices[k]
                    c = dense_col[g]
                    if c >= 0:
                        v = data[k]
                        if raw:
                            v = np.log1p(v * scale[r])
                        xd[r, c] += v
                    else:
                        ptr[g + 1] += 1
                        m += 1
            n_present = 0
            for g in range(n_genes):
                if ptr[g + 1] > 0:
                    n_present += 1
            present = np.empty(n_present, np.int32)
            q = 0
            for g in range(n_genes):
                if ptr[g + 1] > 0:
                    present[q] = g
                    q += 1
                ptr[g + 1] += ptr[g]
            rows = np.empty(m, np.int32)
            vals = np.empty(m, np.float32)
            fill = ptr[:-1].copy()
            for r in range(r0, r1):
                for k in range(indptr[r], indptr[r + 1]):
                    g = indices[k]
                    if dense_col[g] < 0:
                        p = fill[g]
                        rows[p] = r - r0
                        v = data[k]
                        if raw:
                            v = np.log1p(v * scale[r])
                        vals[p] = v
                        fill[g] = p + 1
            acc = np.empty((r1 - r0, tile), np.float32)
            for t in range(n_tiles):
                acc[:] = 0.0
                w_t = wt[t]
                for g in present:
                    w = w_t[g]
                    for p in range(ptr[g], ptr[g + 1]):
                        r = rows[p]
                        v = vals[p]
                        for j in range(tile):
                            acc[r, j] += v * w[j]
                out[r0:r1, t * tile : (t + 1) * tile] = acc

    return block_gene_major


def count_scale(x: sp.csr_matrix, target_sum: float) -> np.ndarray:
    """Per-cell ``target_sum / total`` (0 for empty cells), checking the counts are not negative."""
    if x.nnz and x.data.min() < 0:
        msg = "negative values in the expression matrix: expected raw counts (normalized=False)"
        raise ValueError(msg)
    totals = np.asarray(x.sum(axis=1), dtype=np.float64).ravel()
    scale = np.divide(target_sum, totals, out=np.zeros_like(totals), where=totals > 0)
    return scale.astype(np.float32)


def _c_kernel() -> kernels.FirstLayerKernel:
    """The compiled kernel, for a backend already checked to be ``"c"``."""
    kernel = kernels.load()
    if kernel is None:
        msg = "the compiled first-layer kernel (encoder._first_layer) is not built"
        raise RuntimeError(msg)
    return kernel


def _running_stats(bn: torch.nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """The running mean and variance an eval-mode BatchNorm normalises with."""
    mean, var = bn.running_mean, bn.running_var
    if mean is None or var is None:
        msg = "a BatchNorm without running statistics cannot be folded into a Linear"
        raise ValueError(msg)
    return mean, var


def available_backends() -> tuple[str, ...]:
    """The first-layer backends this installation can run, fastest first."""
    found = []
    if kernels.load() is not None:
        found.append("c")
    if HAVE_NUMBA:
        found.append("numba")
    return (*found, "scipy")


@torch.no_grad()
def fold_inference_layers(blocks: torch.nn.Module) -> list[torch.nn.Module]:
    """The layers after the first block as inference needs them: Dropout dropped, each eval
    BatchNorm folded into the Linear before it (one GEMM, no extra pass over the batch)."""
    flat = [
        m for m in blocks.modules() if not isinstance(m, torch.nn.Sequential | torch.nn.ModuleList)
    ]
    out: list[torch.nn.Module] = []
    for m in flat:
        if isinstance(m, torch.nn.Dropout):
            continue
        if isinstance(m, torch.nn.BatchNorm1d) and out and isinstance(out[-1], torch.nn.Linear):
            lin = copy.deepcopy(out[-1])
            mean, var = _running_stats(m)
            scale = m.weight / torch.sqrt(var + m.eps)
            lin.weight.copy_((lin.weight.double() * scale.double()[:, None]).float())
            lin.bias.copy_(((lin.bias - mean) * scale + m.bias).float())
            out[-1] = lin
            continue
        out.append(m)
    return out


class SparseEmbedder:
    """A frozen, inference-only copy of an :class:`Encoder` with a sparse first layer.

    Build it once per model (it re-lays the first-layer weights for its backend);
    call :meth:`embed_normalized` with log-normalised CSR batches, or
    :meth:`embed_counts` with raw counts. ``backend`` is one of :data:`BACKENDS` or
    ``None`` for the fastest that fits; ``n_threads`` defaults to torch's thread count.
    """

    def __init__(
        self,
        encoder: Encoder,
        *,
        backend: str | None = None,
        tile: int = DEFAULT_TILE,
        cell_block: int | None = None,
        gene_block: int = kernels.DEFAULT_GENE_BLOCK,
        n_threads: int | None = None,
        dense_threshold: float | None = None,
    ) -> None:
        enc = copy.deepcopy(encoder).cpu().float().eval()
        linear = enc.first_linear()
        block = enc.first_block()
        bn = cast(torch.nn.BatchNorm1d, block[2])
        mean, var = _running_stats(bn)
        with torch.no_grad():
            scale = bn.weight / torch.sqrt(var + bn.eps)
            w = (linear.weight * scale[:, None]).double()
            b = (linear.bias - mean) * scale + bn.bias
        self.hidden_size, self.n_genes = linear.weight.shape
        self.bias = b.detach().float()
        self.prelu = block[3]
        self.rest = fold_inference_layers(enc.network[1:])
        self.backend = self._choose_backend(backend)
        self.n_threads = int(n_threads) if n_threads else torch.get_num_threads()
        self.gene_block = int(gene_block)
        if self.gene_block < 1 or self.gene_block & (self.gene_block - 1):
            msg = f"gene_block must be a power of two, got {gene_block}"
            raise ValueError(msg)
        if dense_threshold is not None and not 0.0 < dense_threshold <= 1.0:
            msg = (
                "dense_threshold must be in (0, 1] (a fraction of the batch's cells), "
                f"got {dense_threshold}"
            )
            raise ValueError(msg)
        self.dense_threshold = dense_threshold
        w_np = w.float().numpy()
        if self.backend == "scipy":
            self.tile = self.hidden_size
            self.cell_block = int(cell_block or DEFAULT_CELL_BLOCK)
            self.wt_dense = np.ascontiguousarray(w_np.T)  # (G, H) for scipy's CSR @ dense
            return
        if self.backend == "c":
            self.tile = _c_kernel().tile
            self.cell_block = int(cell_block or kernels.DEFAULT_CELL_BLOCK)
        else:
            self.tile = int(tile) if self.hidden_size % int(tile) == 0 else self.hidden_size
            self.cell_block = int(cell_block or DEFAULT_CELL_BLOCK)
        n_tiles = self.hidden_size // self.tile
        # (H, G) -> (n_tiles, G, T): tile t holds W'[t*T:(t+1)*T, :].T contiguous
        self.wt = kernels.huge_page_array((n_tiles, self.n_genes, self.tile))
        self.wt[...] = w_np.reshape(n_tiles, self.tile, self.n_genes).transpose(0, 2, 1)

    def _choose_backend(self, backend: str | None) -> str:
        available = available_backends()
        if backend is None:
            c_fits = self.hidden_size % _c_kernel().tile == 0 if "c" in available else False
            return next(b for b in available if b != "c" or c_fits)
        if backend not in BACKENDS:
            msg = f"unknown first-layer backend {backend!r}; expected one of {BACKENDS}"
            raise ValueError(msg)
        if backend not in available:
            msg = f"first-layer backend {backend!r} is not available here (have {available})"
            raise RuntimeError(msg)
        if backend == "c" and self.hidden_size % _c_kernel().tile:
            msg = (
                f"the C kernel needs a first layer that is a multiple of {_c_kernel().tile} "
                f"wide, this one is {self.hidden_size}"
            )
            raise ValueError(msg)
        return backend

    def first_layer(self, x: sp.csr_matrix, *, target_sum: float | None = None) -> np.ndarray:
        """x @ W'.T for a CSR batch, as (n_cells, hidden) float32.

        ``x`` is log-normalised, or raw counts when ``target_sum`` is given: then the
        kernel normalises each value as it reads it (``log1p(count * target_sum /
        total)``, as :func:`encoder.data.log_normalize`), saving a pass over the batch.
        """
        if x.shape[1] != self.n_genes:
            msg = f"batch has {x.shape[1]} genes, the model {self.n_genes}"
            raise ValueError(msg)
        n = x.shape[0]
        scale = None
        if target_sum is not None:
            scale = count_scale(x, target_sum)
            if self.backend == "scipy":
                x = log_normalize(x, target_sum)
        if self.backend == "scipy":
            return np.asarray(x @ self.wt_dense, dtype=np.float32)
        out = np.empty((n, self.hidden_size), dtype=np.float32)
        if n == 0:
            return out
        dense_genes = self.dense_genes(x)
        dense_col = np.full(self.n_genes, -1, dtype=np.int32)
        dense_col[dense_genes] = np.arange(dense_genes.size, dtype=np.int32)
        xd = np.zeros((n if dense_genes.size else 1, max(dense_genes.size, 1)), np.float32)
        data = x.data.astype(np.float32, copy=False)
        if self.backend == "c":
            kernels.run_parallel(
                _c_kernel(),
                self.n_threads,
                n,
                csr=(
                    x.indptr.astype(np.int64, copy=False),
                    x.indices.astype(np.int32, copy=False),
                    data,
                ),
                scale=scale,
                dense_col=dense_col if dense_genes.size else None,
                xd=xd if dense_genes.size else None,
                wt=self.wt,
                out=out,
                gene_block=self.gene_block,
                cell_block=self.cell_block,
            )
        else:
            _kernel(self.tile)(
                x.indptr,
                x.indices,
                data,
                np.zeros(0, np.float32) if scale is None else scale,
                self.wt,
                out,
                self.cell_block,
                dense_col,
                xd,
            )
        if dense_genes.size:
            # (n_tiles, D, T) -> (D, H): the dense genes' rows of W'.T, one BLAS product.
            wd = self.wt[:, dense_genes, :].transpose(1, 0, 2).reshape(dense_genes.size, -1)
            torch.from_numpy(out).addmm_(torch.from_numpy(xd), torch.from_numpy(wd))
        return out

    def dense_genes(self, x: sp.csr_matrix) -> np.ndarray:
        """Genes expressed in at least ``dense_threshold`` of the batch's cells (opt-in).

        Such genes make a nearly dense sub-matrix, whose product a BLAS GEMM does at
        several times the sparse kernel's FLOP rate where the CPU has wide vectors;
        on AVX2 the kernel is about as fast, so the split is off by default.
        """
        if self.dense_threshold is None or x.shape[0] < MIN_DENSE_SPLIT_CELLS:
            return np.zeros(0, dtype=np.int64)
        counts = np.bincount(x.indices, minlength=self.n_genes)
        return np.flatnonzero(counts >= self.dense_threshold * x.shape[0])

    def embed_normalized(self, x: sp.csr_matrix) -> np.ndarray:
        """Unit-norm embeddings (n_cells, latent) for a log-normalised CSR batch."""
        return self._finish(self.first_layer(x))

    def embed_counts(self, x: sp.csr_matrix, target_sum: float) -> np.ndarray:
        """Unit-norm embeddings for a raw-count CSR batch, normalised inside the kernel."""
        return self._finish(self.first_layer(x, target_sum=target_sum))

    @torch.no_grad()
    def _finish(self, first: np.ndarray) -> np.ndarray:
        """Bias, PReLU, the hidden layers and L2 normalisation after the first Linear."""
        h = torch.from_numpy(first) + self.bias
        h = self.prelu(h)
        for layer in self.rest:
            h = layer(h)
        return F.normalize(h, p=2, dim=1).numpy()
