"""The compiled first-layer kernel (``encoder/csrc/first_layer.c``) and how to feed it.

Three things decide its speed, and all three live here:

* **The C micro-kernel** keeps each cell's 128 accumulators in vector registers while it
  walks the cell's non-zeros in one L2-sized block of genes (see the C file's header).
* **Huge pages for the weights.** Every non-zero reads a 512-byte weight slice at a
  random row; with 4 KB pages each read is a TLB miss (and, in a VM, a two-level page
  walk). Backing the re-laid weights with 2 MB pages measured 2x on the same kernel.
  Linux hands them out to regions advised with ``MADV_HUGEPAGE`` (the default
  ``transparent_hugepage=madvise`` setting); elsewhere the array is ordinary memory.
* **Threads over row ranges.** ctypes releases the GIL for the call, so one Python thread
  per core runs its own rows; there is no shared state to lock.

:func:`load` returns ``None`` when the extension was not built (no C compiler at install
time): callers then use the numba kernel in :mod:`encoder.sparse`.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import mmap
from concurrent.futures import ThreadPoolExecutor
from typing import TypedDict, Unpack

import numpy as np

HUGE_PAGE = 2 << 20
DEFAULT_GENE_BLOCK = 512  # x 128 hidden units x 4 bytes = 256 KB of weights, L2-resident
DEFAULT_CELL_BLOCK = 1024  # x 512-byte accumulator rows = 512 KB: with the weights, < L2


class KernelArgs(TypedDict):
    """The arguments of :class:`FirstLayerKernel` that every row range shares."""

    csr: tuple[np.ndarray, np.ndarray, np.ndarray]
    scale: np.ndarray | None
    dense_col: np.ndarray | None
    xd: np.ndarray | None
    wt: np.ndarray
    out: np.ndarray
    gene_block: int
    cell_block: int


class FirstLayerKernel:
    """ctypes binding to ``cs_first_layer``: the product for a range of rows."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._fn = lib.cs_first_layer
        p, i64 = ctypes.c_void_p, ctypes.c_int64
        self._fn.argtypes = [p, p, p, p, p, p, i64, p, i64, i64, p, i64, i64, i64, i64]
        self._fn.restype = ctypes.c_int
        self.tile = int(lib.cs_first_layer_tile())

    def __call__(
        self,
        csr: tuple[np.ndarray, np.ndarray, np.ndarray],
        scale: np.ndarray | None,
        dense_col: np.ndarray | None,
        xd: np.ndarray | None,
        wt: np.ndarray,
        out: np.ndarray,
        rows: tuple[int, int],
        gene_block: int,
        cell_block: int,
    ) -> None:
        """Fill ``out[rows[0]:rows[1]]``; arrays must already have the kernel's dtypes."""
        indptr, indices, data = csr
        n_tiles, n_genes, _ = wt.shape
        status = self._fn(
            indptr.ctypes.data,
            indices.ctypes.data,
            data.ctypes.data,
            None if scale is None else scale.ctypes.data,
            None if dense_col is None else dense_col.ctypes.data,
            None if xd is None else xd.ctypes.data,
            0 if xd is None else xd.shape[1],
            wt.ctypes.data,
            n_genes,
            n_tiles,
            out.ctypes.data,
            rows[0],
            rows[1],
            gene_block,
            cell_block,
        )
        if status == -2:
            msg = f"gene_block must be a power of two, got {gene_block}"
            raise ValueError(msg)
        if status != 0:
            msg = "the first-layer kernel could not allocate its scratch buffers"
            raise MemoryError(msg)


@functools.cache
def load() -> FirstLayerKernel | None:
    """The compiled kernel, or ``None`` when ``encoder._first_layer`` was not built."""
    try:
        extension = importlib.import_module("encoder._first_layer")
    except ImportError:
        return None
    return FirstLayerKernel(ctypes.CDLL(extension.__file__))


def huge_page_array(shape: tuple[int, ...], dtype: np.dtype | type = np.float32) -> np.ndarray:
    """A zeroed array on 2 MB-aligned anonymous memory advised to use transparent huge pages.

    The mmap object stays alive as the array's base. Where ``madvise`` or huge pages are
    unavailable the array is still correct, only backed by ordinary pages.
    """
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if nbytes == 0:
        return np.zeros(shape, dtype)
    region = mmap.mmap(-1, nbytes + HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    raw = np.frombuffer(region, dtype=np.uint8)
    start = -raw.ctypes.data % HUGE_PAGE
    advise = getattr(mmap, "MADV_HUGEPAGE", None)
    if advise is not None:
        region.madvise(advise, start - start % mmap.PAGESIZE, nbytes + start % mmap.PAGESIZE)
    return raw[start : start + nbytes].view(dtype).reshape(shape)


@functools.cache
def _pool(n_threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="first-layer")


def row_ranges(n_rows: int, n_threads: int) -> list[tuple[int, int]]:
    """``n_threads`` contiguous, near-equal row ranges (fewer when rows are fewer)."""
    per = -(-n_rows // max(1, n_threads))
    return [(start, min(n_rows, start + per)) for start in range(0, n_rows, max(1, per))]


def run_parallel(
    kernel: FirstLayerKernel, n_threads: int, n_rows: int, **kwargs: Unpack[KernelArgs]
) -> None:
    """Call ``kernel`` on disjoint row ranges from ``n_threads`` threads (GIL released)."""
    ranges = row_ranges(n_rows, n_threads)
    if len(ranges) == 1:
        kernel(rows=ranges[0], **kwargs)
        return
    futures = [_pool(n_threads).submit(kernel, rows=r, **kwargs) for r in ranges]
    for future in futures:
        future.result()
