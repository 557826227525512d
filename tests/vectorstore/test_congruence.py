"""One suite of assertions run on every backend: the embedded engine and qdrant-client local mode.

The reference for every search is exact numpy over the boolean-masked subset, so a
backend passes only if it returns the true filtered neighbours.
"""

from __future__ import annotations

import numpy as np
import pytest

from vectorstore import CellRecord, SearchFilter, StoreConfig, open_store

T_CELL = "CL:0000084"  # its descendants in the atlas: CD4 and CD8 T cells

pytestmark = pytest.mark.integration


def exact_topk(records: list[CellRecord], query: np.ndarray, k: int, flt=None) -> list[str]:
    """Cell ids of the exact top-k by cosine among records matching ``flt``."""
    keep = [r for r in records if flt is None or flt.matches(r.full_payload())]
    mat = np.stack([r.vector / np.linalg.norm(r.vector) for r in keep])
    sims = mat @ (query / np.linalg.norm(query))
    order = np.argsort(-sims, kind="stable")[:k]
    return [keep[i].cell_id for i in order]


def test_upsert_counts_and_reupsert_is_idempotent(shared_store, atlas):
    assert shared_store.count() == len(atlas)
    shared_store.upsert(atlas)
    shared_store.upsert(atlas[:10])
    assert shared_store.count() == len(atlas)


def test_reupsert_overwrites_payload(store, atlas):
    rec = atlas[0]
    changed = CellRecord(
        rec.dataset_id, rec.cell_id, rec.vector, {**rec.payload, "donor_id": "new"}
    )
    store.upsert([changed])
    (hit,) = store.retrieve([(rec.dataset_id, rec.cell_id)])
    assert hit.payload["donor_id"] == "new"
    assert store.count() == len(atlas)


def test_reupsert_leaves_no_stale_payload_field(open_backend):
    vec = np.ones(128, dtype=np.float32)
    s = open_backend()
    s.upsert([CellRecord("d", "c", vec, {"study_id": "a", "donor_id": "x", "tissue_id": "t"})])
    s.upsert([CellRecord("d", "c", vec, {"study_id": "b", "cell_type_id": "CL:1"})])
    (hit,) = s.retrieve([("d", "c")])
    assert hit.payload == {
        "study_id": "b",
        "cell_type_id": "CL:1",
        "dataset_id": "d",
        "cell_id": "c",
    }
    assert s.count(SearchFilter(must={"donor_id": ["x"]})) == 0


def test_duplicate_cells_in_one_batch_are_written_once(open_backend, atlas):
    s = open_backend()
    s.upsert(atlas[:5] + atlas[:5])
    assert s.count() == 5


def test_self_query_returns_the_cell_first_with_cosine_scores(shared_store, atlas):
    rec = atlas[7]
    (hits,) = shared_store.search(rec.vector, k=5)
    assert hits[0].cell_id == rec.cell_id
    assert hits[0].dataset_id == rec.dataset_id
    assert hits[0].score == pytest.approx(1.0, abs=1e-3)
    assert hits[0].distance == pytest.approx(0.0, abs=1e-3)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert all(h.distance == pytest.approx(1 - h.score) for h in hits)


@pytest.mark.parametrize(
    "flt",
    [
        None,
        SearchFilter(must={"cell_type_ancestors": [T_CELL]}),
        SearchFilter(must={"tissue_id": ["UBERON:0002048"]}, must_not={"study_id": ["study0"]}),
        SearchFilter(must={"study_id": ["study1", "study2"], "disease_id": ["MONDO:0005068"]}),
    ],
    ids=["none", "t-cells", "lung-not-study0", "two-studies-disease"],
)
def test_filtered_search_equals_exact_masked_search(shared_store, atlas, flt):
    rng = np.random.default_rng(1)
    queries = np.stack([atlas[i].vector for i in (3, 40, 95)]) + 0.1 * rng.normal(size=(3, 128))
    results = shared_store.search(queries, k=10, filter=flt)
    assert len(results) == 3
    for q, hits in zip(queries, results, strict=True):
        assert [h.cell_id for h in hits] == exact_topk(atlas, q, 10, flt)
        assert all(flt is None or flt.matches(h.payload) for h in hits)


@pytest.mark.parametrize("exact_vectors", [False, True])
def test_search_ids_equals_search_and_reads_fields_by_id(shared_store, atlas, exact_vectors):
    rng = np.random.default_rng(2)
    queries = np.stack([atlas[i].vector for i in (5, 60)]) + 0.1 * rng.normal(size=(2, 128))
    flt = SearchFilter(must={"cell_type_ancestors": [T_CELL]})
    ids, dists = shared_store.search_ids(queries, 10, flt, exact_vectors=exact_vectors)
    assert ids.shape == dists.shape == (2, 10)
    for q, row, drow in zip(queries, ids, dists, strict=True):
        cells = shared_store.payload_values(list(row), ["cell_id"])["cell_id"]
        assert cells == exact_topk(atlas, q, 10, flt)
        assert list(drow) == sorted(drow)
    labels = shared_store.payload_values(list(ids[0]), ["cell_type_id"])["cell_type_id"]
    assert all(T_CELL in ontology_ancestors(lab) for lab in labels)
    # fewer matches than k: None ids and infinite distances pad the row
    few = SearchFilter(must={"cell_id": [atlas[0].cell_id, atlas[1].cell_id]})
    ids, dists = shared_store.search_ids(queries[:1], 5, few)
    assert list(ids[0, 2:]) == [None] * 3 and np.isinf(dists[0, 2:]).all()


def test_search_reads_only_the_fields_asked_for(shared_store, atlas):
    (hits,) = shared_store.search(atlas[3].vector, k=3, fields=("cell_type_id",))
    assert set(hits[0].payload) == {"cell_type_id"}


def ontology_ancestors(term: str) -> set[str]:
    import ontology

    return set(ontology.ancestors(term))


def test_t_cell_filter_finds_cd4_and_cd8_not_b_cells(shared_store, atlas):
    b_cell = next(r for r in atlas if r.payload["cell_type_id"] == "CL:0000236")
    (hits,) = shared_store.search(
        b_cell.vector, k=60, filter=SearchFilter(must={"cell_type_ancestors": [T_CELL]})
    )
    types = {h.payload["cell_type_id"] for h in hits}
    assert types == {"CL:0000624", "CL:0000625"}


def test_excluding_a_study(shared_store, atlas):
    rec = atlas[0]
    flt = SearchFilter(must_not={"study_id": [rec.payload["study_id"]]})
    (hits,) = shared_store.search(rec.vector, k=50, filter=flt)
    assert len(hits) == 50
    assert rec.payload["study_id"] not in {h.payload["study_id"] for h in hits}


def test_k_larger_than_matches_returns_all_matches(shared_store, atlas):
    flt = SearchFilter(must={"cell_type_id": ["CL:0000235"], "study_id": ["study0"]})
    n = sum(flt.matches(r.full_payload()) for r in atlas)
    (hits,) = shared_store.search(atlas[0].vector, k=500, filter=flt)
    assert len(hits) == n == shared_store.count(flt)


def test_with_vectors_returns_unit_vectors(shared_store, atlas):
    rec = atlas[11]
    (hits,) = shared_store.search(rec.vector, k=3, with_vectors=True)
    assert hits[0].vector is not None
    expected = rec.vector / np.linalg.norm(rec.vector)
    np.testing.assert_allclose(hits[0].vector, expected, atol=1e-5)
    (plain,) = shared_store.search(rec.vector, k=1)
    assert plain[0].vector is None


def test_retrieve_by_pair_and_by_bare_cell_id_in_request_order(shared_store, atlas):
    a, b = atlas[5], atlas[60]
    hits = shared_store.retrieve(
        [(b.dataset_id, b.cell_id), a.cell_id, ("nope", "missing"), "missing"]
    )
    assert [(h.dataset_id, h.cell_id) for h in hits] == [
        (b.dataset_id, b.cell_id),
        (a.dataset_id, a.cell_id),
    ]
    np.testing.assert_allclose(hits[1].vector, a.vector / np.linalg.norm(a.vector), atol=1e-5)
    assert hits[0].payload["cell_type_ancestors"] == b.payload["cell_type_ancestors"]


def test_bare_cell_id_matches_every_dataset_holding_it(open_backend):
    vec = np.ones(128, dtype=np.float32)
    s = open_backend()
    s.upsert([CellRecord("d1", "same", vec, {}), CellRecord("d2", "same", -vec, {})])
    hits = s.retrieve(["same"], with_vectors=False)
    assert [h.dataset_id for h in hits] == ["d1", "d2"]
    assert hits[0].vector is None


def test_count_and_facet_agree_with_python(shared_store, atlas):
    flt = SearchFilter(must={"cell_type_ancestors": [T_CELL]})
    assert shared_store.count(flt) == sum(flt.matches(r.full_payload()) for r in atlas)
    by_type = shared_store.facet("cell_type_id")
    assert by_type == dict.fromkeys(("CL:0000624", "CL:0000625", "CL:0000236", "CL:0000235"), 30)
    by_study = shared_store.facet("study_id", filter=flt)
    assert by_study == {"study0": 20, "study1": 20, "study2": 20}
    assert shared_store.facet("cell_type_ancestors")["CL:0000542"] == 90
    with pytest.raises(ValueError, match="unknown field"):
        shared_store.facet("colour")


def test_delete_dataset(store, atlas):
    n = sum(r.dataset_id == "study1-d0" for r in atlas)
    assert store.delete_dataset("study1-d0") == n
    assert store.count() == len(atlas) - n
    assert store.delete_dataset("study1-d0") == 0
    (hits,) = store.search(atlas[0].vector, k=len(atlas))
    assert "study1-d0" not in {h.dataset_id for h in hits}


def test_optimize_then_search_still_exact(store, atlas):
    store.optimize()
    q = atlas[33].vector
    (hits,) = store.search(q, k=10, ef=64)
    assert [h.cell_id for h in hits] == exact_topk(atlas, q, 10)


def test_reopen_keeps_the_data(open_backend, atlas, fast_tmp):
    s = open_backend(path=fast_tmp / "persist")
    s.upsert(atlas)
    s.close()
    again = open_backend(path=fast_tmp / "persist")
    assert again.count() == len(atlas)
    (hits,) = again.search(atlas[0].vector, k=1)
    assert hits[0].cell_id == atlas[0].cell_id


def test_invalid_queries_are_refused(shared_store):
    with pytest.raises(ValueError, match=r"shape \(n, 128\)"):
        shared_store.search(np.ones(64), k=3)
    with pytest.raises(ValueError, match="at least 1"):
        shared_store.search(np.ones(128), k=0)
    with pytest.raises(ValueError, match="non-zero"):
        shared_store.search(np.zeros(128), k=3)


@pytest.mark.parametrize("quantization", ["none", "int8"])
def test_both_backends_give_the_same_answers(fast_tmp, quantization, atlas_factory):
    atlas = atlas_factory(n_per_type=20, seed=3)
    cfg = StoreConfig(quantization=quantization)
    edge = open_store(path=fast_tmp / "e", config=cfg)
    local = open_store(path=fast_tmp / "l", config=cfg, engine="qdrant-local")
    try:
        for s in (edge, local):
            s.upsert(atlas)
        flt = SearchFilter(
            must={"cell_type_ancestors": [T_CELL]}, must_not={"study_id": ["study2"]}
        )
        queries = np.stack([r.vector for r in atlas[::17]])
        a = edge.search(queries, k=15, filter=flt)
        b = local.search(queries, k=15, filter=flt)
        for ha, hb in zip(a, b, strict=True):
            assert [h.cell_id for h in ha] == [h.cell_id for h in hb]
            np.testing.assert_allclose([h.score for h in ha], [h.score for h in hb], atol=1e-4)
        assert edge.facet("tissue_id", filter=flt) == local.facet("tissue_id", filter=flt)
    finally:
        edge.close()
        local.close()


def test_scan_returns_every_matching_cell_with_its_vector(shared_store, atlas):
    """The export annotation's in-memory index is built from: ids usable by id lookups,
    the stored vectors and one payload field, for exactly the cells the filter keeps."""
    flt = SearchFilter(must={"cell_type_ancestors": [T_CELL]})
    ids, vectors, found = shared_store.scan(flt, ["cell_type_id"])
    values = found["cell_type_id"]
    kept = {r.cell_id: r for r in atlas if flt.matches(r.full_payload())}
    assert 0 < len(ids) == len(kept) == vectors.shape[0] == len(values)
    cells = shared_store.payload_values(ids, ["cell_id"])["cell_id"]
    assert set(cells) == set(kept)
    for cell, vec, value in zip(cells, vectors, values, strict=True):
        rec = kept[cell]
        assert value == rec.payload["cell_type_id"]
        assert np.allclose(vec, rec.vector / np.linalg.norm(rec.vector), atol=1e-5)
    everything, _, _ = shared_store.scan(None, ["cell_type_id"])
    assert len(everything) == len(atlas)
