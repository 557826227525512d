"""Queries as raw counts: the server embeds them with the loaded (default) encoder."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # loads the encoder twice


@pytest.fixture(scope="module")
def pbmc_counts():
    """Twelve real PBMCs as raw counts over their 765 genes, plus the default encoder."""
    import scipy.sparse as sp

    import encoder
    from celldata.bundled import load_pbmc68k_reduced

    pbmc = load_pbmc68k_reduced()[:12]
    raw = pbmc.raw.X.toarray() if sp.issparse(pbmc.raw.X) else np.asarray(pbmc.raw.X)
    counts = np.rint(np.expm1(raw) * pbmc.obs["n_counts"].to_numpy()[:, None] / 1e4)
    return (
        sp.csr_matrix(counts.astype(np.float32)),
        list(pbmc.raw.var_names),
        encoder.load_default(),
    )


def test_model_info_and_expression_query_embed_like_the_encoder(server_env, pbmc_counts) -> None:
    from vectorstore import CellRecord

    counts, genes, enc = pbmc_counts
    local = enc.embed(counts, gene_names=genes, min_overlap=0.2)
    server_env.store.upsert(
        [
            CellRecord("expr/d1", f"expr-{i}", local[i], {"study_id": "expr"})
            for i in range(counts.shape[0])
        ]
    )
    try:
        with server_env.client() as client:
            info = client.model_info()
            assert info["model_version"] == enc.model_version
            assert info["dim"] == 128 and info["n_genes"] == len(enc.genes)
            assert set(info["cell_types"]) == set(enc.labels)
            # 765 of the model's 2,000 genes: under the 50% overlap the server requires.
            with pytest.raises(Exception, match="INVALID_ARGUMENT"):
                client.search(counts, genes=genes, k=1)
            panel = {g: i for i, g in enumerate(enc.genes)}
            keep = [j for j, g in enumerate(genes) if g in panel]
            padded = np.zeros((counts.shape[0], len(enc.genes)), dtype=np.float32)
            padded[:, [panel[genes[j]] for j in keep]] = counts[:, keep].toarray()
            hits = client.search(padded, genes=enc.genes, k=1, filter={"studies": ["expr"]})
    finally:
        server_env.store.delete_dataset("expr/d1")
    assert list(hits["cell_id"]) == [f"expr-{i}" for i in range(counts.shape[0])]
    assert hits["score"].min() > 0.999  # the server embedded exactly what the encoder does
