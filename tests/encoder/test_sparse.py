"""The sparse first layer on every backend built here: normalisation, the split, messy CSR."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from encoder import EncoderConfig, kernels
from encoder.data import log_normalize
from encoder.module import AutoEncoder
from encoder.sparse import SparseEmbedder, available_backends

KERNELS = [b for b in available_backends() if b != "scipy"]


@pytest.fixture
def wide(randomize):
    """A 1024-wide first layer (several tiles) and 600 cells with skewed gene detection."""
    torch.manual_seed(1)
    module = AutoEncoder(EncoderConfig(n_genes=1500, hidden_dims=(1024, 256), latent_dim=128))
    randomize(module, seed=4)
    module.eval()
    rng = np.random.default_rng(5)
    p = np.clip(rng.beta(0.3, 3.0, 1500) * 1.5, 0.0, 0.95)  # some genes in most cells
    mask = rng.random((600, 1500)) < p
    raw = sp.csr_matrix(mask * (rng.poisson(2.0, mask.shape) + 1.0), dtype=np.float32)
    raw.data[raw.indptr[7] : raw.indptr[8]] = 0.0  # an empty cell: zeros, not NaN
    raw.eliminate_zeros()
    x = log_normalize(raw)
    with torch.no_grad():
        ref = module.encoder(torch.from_numpy(x.toarray())).numpy()
    return module.encoder, x, ref, raw


@pytest.mark.parametrize("backend", KERNELS)
@pytest.mark.parametrize("threshold", [None, 0.2])
def test_raw_counts_are_normalised_in_the_kernel(wide, threshold, backend):
    encoder, x, ref, raw = wide
    fast = SparseEmbedder(encoder, backend=backend, cell_block=64, dense_threshold=threshold)
    fused = fast.embed_counts(raw, 1e4)
    assert np.isfinite(fused).all()
    np.testing.assert_allclose(fused, fast.embed_normalized(x), atol=1e-6)
    assert np.abs(fused - ref).max() < 1e-5
    np.testing.assert_allclose(
        fast.first_layer(raw * 3, target_sum=1e4), fast.first_layer(x), rtol=1e-5, atol=1e-5
    )


def test_scipy_fallback_takes_raw_counts_too(wide):
    encoder, _, ref, raw = wide
    slow = SparseEmbedder(encoder, backend="scipy")
    assert np.abs(slow.embed_counts(raw, 1e4) - ref).max() < 1e-5


@pytest.mark.parametrize("backend", available_backends())
def test_negative_counts_are_refused(wide, backend):
    encoder, _, _, raw = wide
    bad = raw.copy()
    bad.data[3] = -1.0
    with pytest.raises(ValueError, match="negative values"):
        SparseEmbedder(encoder, backend=backend).embed_counts(bad, 1e4)


@pytest.mark.parametrize("backend", KERNELS)
@pytest.mark.parametrize("threshold", [0.3, 0.05, 1.0])
def test_dense_split_matches_dense_path(wide, threshold, backend):
    encoder, x, ref, _ = wide
    fast = SparseEmbedder(encoder, backend=backend, cell_block=96, dense_threshold=threshold)
    split = fast.dense_genes(x)
    counts = np.bincount(x.indices, minlength=x.shape[1])
    assert np.array_equal(split, np.flatnonzero(counts >= threshold * x.shape[0]))
    if threshold < 1.0:
        assert 0 < split.size < x.shape[1]
    assert np.abs(fast.embed_normalized(x) - ref).max() < 1e-5


def test_small_batches_skip_the_split(wide):
    encoder, x, ref, _ = wide
    fast = SparseEmbedder(encoder, dense_threshold=0.05)
    assert fast.dense_genes(x[:100]).size == 0
    assert np.abs(fast.embed_normalized(x[:100]) - ref[:100]).max() < 1e-5


@pytest.mark.parametrize("backend", KERNELS)
@pytest.mark.parametrize("threshold", [None, 0.2])
def test_unsorted_and_duplicate_entries_are_summed_like_scipy(wide, threshold, backend):
    """A CSR straight from user code may hold duplicates and unsorted columns."""
    encoder, x, _, _ = wide
    half = x.copy()
    half.data = half.data / 2
    rows = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))
    order = np.lexsort((-np.concatenate([half.indices, half.indices]), np.tile(rows, 2)))
    data = np.concatenate([half.data, half.data])[order]
    indices = np.concatenate([half.indices, half.indices])[order]
    messy = sp.csr_matrix((data, indices, x.indptr * 2), shape=x.shape)
    assert not messy.has_canonical_format
    fast = SparseEmbedder(encoder, backend=backend, dense_threshold=threshold)
    np.testing.assert_allclose(fast.first_layer(messy), fast.first_layer(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("threshold", [0.0, -0.1, 1.5])
def test_bad_threshold_is_refused(wide, threshold):
    with pytest.raises(ValueError, match="dense_threshold"):
        SparseEmbedder(wide[0], dense_threshold=threshold)


def test_wrong_gene_count_is_refused(wide):
    encoder, x, _, _ = wide
    with pytest.raises(ValueError, match="genes"):
        SparseEmbedder(encoder).first_layer(x[:, :100])


@pytest.mark.parametrize("backend", KERNELS)
@pytest.mark.parametrize(
    ("n_cells", "n_threads", "cell_block"), [(1, 2, 512), (600, 2, 7), (599, 3, 64)]
)
def test_every_row_range_and_chunk_edge_is_covered(wide, backend, n_cells, n_threads, cell_block):
    """Thread ranges and cell chunks that do not divide the batch: every row filled once."""
    encoder, x, ref, _ = wide
    fast = SparseEmbedder(encoder, backend=backend, cell_block=cell_block, n_threads=n_threads)
    assert np.abs(fast.embed_normalized(x[:n_cells]) - ref[:n_cells]).max() < 1e-5
    assert fast.embed_normalized(x[:0]).shape == (0, ref.shape[1])


@pytest.mark.skipif(kernels.load() is None, reason="the C extension was not built here")
def test_c_kernel_is_the_default_and_gene_blocks_do_not_change_results(wide):
    encoder, x, ref, _ = wide
    assert SparseEmbedder(encoder).backend == "c"
    for gene_block in (1, 64, 1024, 4096):  # one gene a block ... all genes in one block
        fast = SparseEmbedder(encoder, gene_block=gene_block)
        assert np.abs(fast.embed_normalized(x) - ref).max() < 1e-5
    with pytest.raises(ValueError, match="power of two"):
        SparseEmbedder(encoder, gene_block=100)


@pytest.mark.skipif(kernels.load() is None, reason="the C extension was not built here")
def test_c_kernel_refuses_a_width_it_cannot_tile(randomize):
    module = AutoEncoder(EncoderConfig(n_genes=300, hidden_dims=(200, 64), latent_dim=16))
    assert SparseEmbedder(module.encoder).backend != "c"
    with pytest.raises(ValueError, match="multiple of 128"):
        SparseEmbedder(module.encoder, backend="c")


def test_unknown_backend_is_refused(wide):
    with pytest.raises(ValueError, match="unknown first-layer backend"):
        SparseEmbedder(wide[0], backend="fortran")


def test_huge_page_array_is_aligned_writable_and_zeroed():
    arr = kernels.huge_page_array((3, 1000, 128))
    assert arr.ctypes.data % kernels.HUGE_PAGE == 0
    assert arr.shape == (3, 1000, 128) and arr.dtype == np.float32
    assert not arr.any()
    arr[...] = 1.5
    assert arr.sum() == 1.5 * arr.size
    assert kernels.huge_page_array((0, 128)).shape == (0, 128)


def test_row_ranges_partition_the_rows():
    for n, threads in [(0, 2), (1, 2), (10, 3), (4096, 2), (5, 8)]:
        ranges = kernels.row_ranges(n, threads)
        covered = [r for a, b in ranges for r in range(a, b)]
        assert covered == list(range(n))
        assert len(ranges) <= threads
