"""Embedding: shapes, unit norm, every input kind, gene alignment, sparse == dense."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from celldata.errors import InsufficientGeneOverlapError
from celldata.read import CellChunk
from encoder import CellEncoder, EncoderConfig
from encoder.data import log_normalize
from encoder.module import AutoEncoder
from encoder.sparse import SparseEmbedder


def test_shape_dtype_and_unit_norm(small_encoder, counts):
    z = small_encoder.embed(counts, batch_size=128)
    assert z.shape == (500, 128)
    assert z.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    assert small_encoder.embedding_dim == 128


def test_batch_size_does_not_change_result(small_encoder, counts):
    a = small_encoder.embed(counts, batch_size=7)
    b = small_encoder.embed(counts, batch_size=4096)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_all_input_kinds_agree(small_encoder, counts, genes):
    expected = small_encoder.embed(counts)
    dense = small_encoder.embed(counts.toarray())
    adata = ad.AnnData(X=counts, var=pd.DataFrame(index=genes))
    chunks = [
        CellChunk(X=counts[s : s + 200], obs=pd.DataFrame(), var_names=pd.Index(genes), start=s)
        for s in range(0, 500, 200)
    ]
    np.testing.assert_allclose(dense, expected, atol=1e-6)
    np.testing.assert_allclose(small_encoder.embed(adata), expected, atol=1e-6)
    np.testing.assert_allclose(small_encoder.embed(iter(chunks)), expected, atol=1e-6)


def test_sparse_path_matches_dense_path(small_encoder, counts):
    sparse = small_encoder.embed(counts)
    dense = small_encoder.embed(counts, dense=True)
    assert np.abs(sparse - dense).max() < 1e-5


def test_sparse_first_layer_matches_at_scimilarity_width(randomize):
    """The tiled kernel with a 1024-wide first layer (several tiles, several cell blocks)."""
    torch.manual_seed(1)
    cfg = EncoderConfig(n_genes=2000, hidden_dims=(1024, 256), latent_dim=128)
    module = AutoEncoder(cfg)
    randomize(module, seed=3)
    module.eval()
    rng = np.random.default_rng(2)
    raw = sp.random(700, 2000, density=0.07, format="csr", random_state=rng, dtype=np.float32)
    raw.data = rng.poisson(2.0, raw.nnz).astype(np.float32) + 1.0
    x = log_normalize(raw)
    fast = SparseEmbedder(module.encoder, tile=128, cell_block=256).embed_normalized(x)
    with torch.no_grad():
        ref = module.encoder(torch.from_numpy(x.toarray())).numpy()
    assert np.abs(fast - ref).max() < 1e-5


def test_gene_names_align_shuffled_and_missing_genes(small_encoder, counts, genes):
    expected = small_encoder.embed(counts)
    rng = np.random.default_rng(1)
    perm = rng.permutation(len(genes))
    shuffled = small_encoder.embed(counts[:, perm], gene_names=[genes[i] for i in perm])
    np.testing.assert_allclose(shuffled, expected, atol=1e-6)
    # Drop 20 genes from the input: equivalent to those genes being zero in model order.
    keep = np.sort(rng.choice(len(genes), size=len(genes) - 20, replace=False))
    partial = small_encoder.embed(counts[:, keep], gene_names=[genes[i] for i in keep])
    zeroed = counts.tolil()
    zeroed[:, np.setdiff1d(np.arange(len(genes)), keep)] = 0
    np.testing.assert_allclose(partial, small_encoder.embed(zeroed.tocsr()), atol=1e-6)


def test_too_few_shared_genes_is_refused(small_encoder, counts, genes):
    names = [f"OTHER{i}" for i in range(len(genes) - 10)] + genes[:10]
    with pytest.raises(InsufficientGeneOverlapError):
        small_encoder.embed(counts, gene_names=names)


def test_wrong_width_without_names_is_refused(small_encoder, counts):
    with pytest.raises(ValueError, match="gene_names"):
        small_encoder.embed(counts[:, :100])


def test_normalized_flag_skips_normalisation(small_encoder, counts):
    np.testing.assert_allclose(
        small_encoder.embed(log_normalize(counts), normalized=True),
        small_encoder.embed(counts),
        atol=1e-6,
    )


def test_log_normalize_matches_definition(counts):
    out = log_normalize(counts).toarray()
    dense = counts.toarray().astype(np.float64)
    expected = np.log1p(dense / dense.sum(axis=1, keepdims=True) * 1e4)
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    empty = sp.csr_matrix((2, 5), dtype=np.float32)
    assert log_normalize(empty).nnz == 0


def test_empty_input_gives_empty_output(small_encoder):
    z = small_encoder.embed(sp.csr_matrix((0, 300), dtype=np.float32))
    assert z.shape == (0, 128)


def test_model_version_tracks_weights(small_encoder):
    version = small_encoder.model_version
    clone = CellEncoder(small_encoder.module, small_encoder.genes)
    assert clone.model_version == version
    with torch.no_grad():
        clone.module.encoder.first_linear().weight[0, 0] += 1.0
    clone._invalidate()
    assert clone.model_version != version


def test_embed_reads_counts_by_the_one_rule(small_encoder, counts, genes):
    import anndata as ad

    from celldata.errors import NotRawCountsError
    from encoder.data import log_normalize

    direct = small_encoder.embed(counts)
    adata = ad.AnnData(X=counts.copy())
    adata.var_names = genes
    adata.raw = adata
    adata.X = log_normalize(counts)  # CELLxGENE's layout: counts in .raw
    np.testing.assert_allclose(small_encoder.embed(adata), direct, atol=1e-6)
    adata.layers["counts"] = counts
    np.testing.assert_allclose(small_encoder.embed(adata, layer="counts"), direct, atol=1e-6)
    with pytest.raises(NotRawCountsError, match="looks log-normalised"):
        small_encoder.embed(adata, layer="X")
    with pytest.raises(NotRawCountsError, match="looks log-normalised"):
        small_encoder.embed(log_normalize(counts))
