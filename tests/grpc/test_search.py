"""CellSearch RPCs end to end: real server, real embedded store, known answers."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.integration

MACROPHAGE, ALVEOLAR = "CL:0000235", "CL:0000583"


def test_search_by_embedding_finds_the_same_type(server_env, centers) -> None:
    with server_env.client() as client:
        hits = client.search(np.stack([centers["macrophage"], centers["B cell"]]), k=5)
    assert list(hits.columns[:6]) == ["query", "rank", "cell_id", "dataset_id", "score", "distance"]
    first, second = hits[hits["query"] == "0"], hits[hits["query"] == "1"]
    assert len(first) == len(second) == 5
    assert set(first["cell_type_id"]) == {MACROPHAGE}
    assert set(first["cell_type"]) == {"macrophage"}
    assert set(second["cell_type"]) == {"B cell"}
    assert first["score"].is_monotonic_decreasing
    np.testing.assert_allclose(first["distance"], 1 - first["score"], atol=1e-6)


def test_filtered_search_only_returns_ild_lung_macrophages(server_env, centers) -> None:
    flt = {"tissues": ["lung"], "diseases": ["interstitial lung disease"]}
    with server_env.client() as client:
        hits = client.search(centers["macrophage"], k=30, filter=flt)
    assert len(hits) == 30
    assert set(hits["study_id"]) == {"ild-lung"}
    assert set(hits["tissue"]) == {"lung"}
    assert set(hits["disease"]) == {"interstitial lung disease"}
    # Descendants included: alveolar macrophages are macrophages, and rank after them.
    with server_env.client() as client:
        typed = client.search(
            centers["macrophage"], k=40, filter={**flt, "cell_types": ["macrophage"]}
        )
        exact = client.search(
            centers["macrophage"],
            k=40,
            filter={**flt, "cell_types": ["macrophage"], "exact_terms": True},
        )
    assert set(typed["cell_type_id"]) == {MACROPHAGE, ALVEOLAR}
    assert set(exact["cell_type_id"]) == {MACROPHAGE}


def test_search_by_stored_cells_excluding_their_study(server_env) -> None:
    with server_env.client() as client:
        hits = client.search(
            [("ild-lung/d1", "ild-lung-T_cell-0"), "ild-lung-T_cell-1"],
            k=10,
            filter={"exclude_query_studies": True},
            fields=["study_id", "cell_type"],
            with_vectors=True,
        )
    assert len(hits) == 20
    assert "ild-lung" not in set(hits["study_id"])
    assert set(hits["cell_type"]) == {"T cell"}
    assert set(hits.columns) >= {"study_id", "cell_type", "vector"}
    assert "donor_id" not in hits.columns  # only the fields asked for
    assert hits["vector"].iloc[0].shape == (128,)


def test_search_centroid_reports_coherence(server_env) -> None:
    same = [f"normal-lung-T_cell-{i}" for i in range(10)]
    mixed = [f"pbmc-T_cell-{i}" for i in range(5)] + [f"pbmc-B_cell-{i}" for i in range(5)]
    with server_env.client() as client:
        hits, coherent = client.search_centroid(same, k=20, filter={"tissues": ["blood"]})
        _, incoherent = client.search_centroid(mixed, k=20)
    assert len(hits) == 20
    assert set(hits["cell_type"]) == {"T cell"}
    assert set(hits["study_id"]) == {"pbmc"}
    assert coherent > 0.9
    assert incoherent < 0.8


def test_annotate_streams_batches_in_order(server_env, centers) -> None:
    rng = np.random.default_rng(0)
    names = ["T cell", "B cell", "alveolar macrophage"] * 5
    queries = np.stack([centers[n] + rng.normal(scale=0.05, size=128) for n in names])
    far = rng.normal(size=(2, 128))  # unlike any stored cell
    with server_env.client() as client:
        ann = client.annotate(
            np.vstack([queries, far]),
            cell_names=[f"c{i}" for i in range(17)],
            k=10,
            batch_size=4,  # five requests on one stream
            unknown_quantile=0.99,  # outliers only: every known query is typical here
        )
    assert list(ann.index) == [f"c{i}" for i in range(17)]
    known = ann.iloc[:15]
    assert list(known["cell_type"]) == names
    assert (known["confidence"] > 0.5).all()
    # Representation: the share of reference cells at least as far from their own
    # neighbours; queries drawn like reference cells are typical (well above 0).
    assert known["representation_confidence"].median() > 0.2
    assert not known["unknown"].any()
    outliers = ann.iloc[15:]
    assert outliers["unknown"].all()
    assert (outliers["representation_confidence"] < known["representation_confidence"].min()).all()


def test_get_cells_returns_found_cells_in_order(server_env) -> None:
    with server_env.client() as client:
        cells = client.get_cells(
            ["pbmc-B_cell-3", ("ild-lung/d1", "ild-lung-macrophage-0"), "no-such-cell"],
            with_vectors=True,
        )
    assert list(cells["cell_id"]) == ["pbmc-B_cell-3", "ild-lung-macrophage-0"]
    assert list(cells["cell_type"]) == ["B cell", "macrophage"]
    assert cells["vector"].iloc[1].shape == (128,)
