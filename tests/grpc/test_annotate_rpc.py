"""Annotate over gRPC: every statistic a user needs, checks before sending, streaming in
batches with a per-batch deadline, and the CLI's obs columns."""

from __future__ import annotations

import anndata as ad
import grpc
import numpy as np
import pytest
import scipy.sparse as sp

from celldata.errors import NotRawCountsError
from cellsearch.client import ANNOTATION_COLUMNS, CellSearchError

pytestmark = pytest.mark.integration

T_CELL, B_CELL, MACROPHAGE, ALVEOLAR = "CL:0000084", "CL:0000236", "CL:0000235", "CL:0000583"
TOKEN = "test-token-0123"


def _queries(centers, names, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([centers[n] + rng.normal(scale=0.05, size=128) for n in names])


def test_annotate_returns_every_statistic(server_env, centers) -> None:
    queries = _queries(centers, ["T cell", "B cell", "macrophage"])
    with server_env.client() as client:
        ann = client.annotate(queries, k=20, with_neighbours=True, unknown_quantile=0.99)
    assert set(ANNOTATION_COLUMNS) | {"votes", "neighbours"} <= set(ann.columns)
    assert list(ann["cell_type_id"][:2]) == [T_CELL, B_CELL]
    assert list(ann["cell_type"][:2]) == ["T cell", "B cell"]
    # macrophages sit beside alveolar macrophages (a subtype): consistent evidence
    assert ann["cell_type_id"].iloc[2] in {MACROPHAGE, ALVEOLAR}
    assert ann["confidence"].iloc[2] > 0.9
    np.testing.assert_allclose(ann["margin"], ann["confidence"] - ann["competing_share"], atol=1e-6)
    assert (ann["nearest_distance"] <= ann["mean_distance"] + 1e-6).all()
    assert ann["votes"].iloc[0].startswith(f"{T_CELL}:")
    assert ann["best_fine_cell_type"].iloc[1] == "B cell"
    assert len(ann["neighbours"].iloc[0]) == 20
    dataset, cell, dist = ann["neighbours"].iloc[1][0]
    assert dataset == "pbmc/d1" and cell.startswith("pbmc-B_cell-")
    assert dist == pytest.approx(ann["nearest_distance"].iloc[1], abs=1e-6)
    params = ann.attrs["parameters"]
    assert params["k"] == "20" and params["calibration"] == "cross-study"
    assert params["unknown_quantile"] == "0.99"
    assert float(params["unknown_threshold"]) > 0


def test_the_client_checks_a_query_before_sending(server_env) -> None:
    counts = sp.csr_matrix(np.ones((3, 5), dtype=np.float32))
    with server_env.client() as client:
        with pytest.raises(ValueError, match="5 columns but 4 gene names"):
            client.annotate(counts, genes=["A", "B", "C", "D"])
        with pytest.raises(TypeError, match="cannot annotate or search a dict"):
            client.annotate({"not": "a matrix"})
        lognorm = sp.csr_matrix(np.full((3, 5), 0.693, dtype=np.float32))
        with pytest.raises(NotRawCountsError, match="looks log-normalised"):
            client.annotate(lognorm, genes=list("ABCDE"))
        with pytest.raises(NotRawCountsError, match="looks log-normalised"):
            client.annotate(ad.AnnData(X=lognorm))


def test_a_large_annotate_streams_batch_by_batch(server_env, centers) -> None:
    names = ["T cell", "B cell", "alveolar macrophage", "macrophage"] * 150  # 600 cells
    queries = _queries(centers, names, seed=1)
    with server_env.client() as client:
        frames = list(client.annotate_batches(queries, k=10, batch_size=50))
        whole = client.annotate(queries, k=10, batch_size=50, unknown_quantile=0.99)
    assert [len(f) for f in frames] == [50] * 12  # one reply per batch (the limit is 50)
    assert list(whole.index) == [str(i) for i in range(600)]
    assert (whole["cell_type"].to_numpy() == np.array(names)).mean() > 0.9


def test_the_deadline_is_per_batch_and_answered_batches_are_kept(server_env, centers) -> None:
    queries = _queries(centers, ["T cell"] * 200, seed=2)
    with server_env.client() as client:
        # 20 batches at 5 s each would never fit one 5 s deadline for the whole stream
        ann = client.annotate(queries, k=10, batch_size=10, timeout=5)
        assert len(ann) == 200
        with pytest.raises(CellSearchError) as err:
            client.annotate(queries, k=10, batch_size=10, timeout=1e-4)
    assert err.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "per-batch timeout" in err.value.details
    assert err.value.partial is not None and len(err.value.partial) < 200


def test_bad_gene_list_from_a_raw_stub_is_invalid_argument(server_env) -> None:
    from cellsearch.v1 import cellsearch_pb2 as pb
    from cellsearch.v1 import cellsearch_pb2_grpc as pb_grpc

    csr = pb.CsrCounts(
        n_cells=1,
        indptr=np.array([0, 1], "<i8").tobytes(),
        indices=np.array([7], "<i4").tobytes(),
        data=np.array([1.0], "<f4").tobytes(),
    )
    request = pb.AnnotateRequest(expression=pb.ExpressionProfiles(genes=["CD3D"], csr=csr))
    with grpc.insecure_channel(server_env.address) as channel:
        stub = pb_grpc.CellSearchStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            list(stub.Annotate(iter([request]), metadata=(("authorization", f"Bearer {TOKEN}"),)))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "gene index 7 but only 1 genes" in err.value.details()


@pytest.mark.slow  # loads the default encoder
def test_cli_annotates_a_cellxgene_layout_file(server_env, tmp_path, capsys) -> None:
    """Log-normalised X, raw counts in .raw (CELLxGENE's layout): the CLI reads .raw, writes
    every statistic as obs columns and the model and parameters in uns; --layer X is refused
    with ingestion's message."""
    from celldata.simulate import simulate_atlas
    from cellsearch.app.cli import main
    from encoder.data import log_normalize

    cells = simulate_atlas(120, 2, seed=3)
    counts = sp.csr_matrix(cells.X)
    adata = ad.AnnData(X=counts.copy(), obs=cells.obs[["study_id"]].copy(), var=cells.var)
    adata.raw = adata
    adata.X = log_normalize(counts)
    path, out = tmp_path / "cxg.h5ad", tmp_path / "annotated.h5ad"
    adata.write_h5ad(path)
    argv = ["--address", server_env.address, "--token", TOKEN, "annotate", str(path)]
    assert main([*argv, "-o", str(out), "--batch-size", "50", "-k", "10"]) == 0
    assert "annotated 120 cells" in capsys.readouterr().out
    written = ad.read_h5ad(out)
    obs = written.obs
    for col in ("cell_type_id", "confidence", "unknown", "margin", "nearest_distance", "votes"):
        assert f"cellsearch_{col}" in obs.columns
    assert (obs["cellsearch_cell_type_id"].astype(str) != "").all()
    uns = written.uns["cellsearch"]
    assert uns["model_version"] and uns["parameters"]["k"] == "10"
    assert uns["n_annotated"] == 120
    assert main([*argv, "-o", str(out), "--batch-size", "50", "--layer", "X"]) == 2
    assert "looks log-normalised" in capsys.readouterr().err
