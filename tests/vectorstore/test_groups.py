"""Payload groups: filters compiled to one integer condition give exactly the same cells."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import qdrant_edge as qe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vectorstore import SearchFilter, StoreConfig, open_store
from vectorstore.edge import EdgeStore
from vectorstore.groups import FILE_NAME, GROUP_FIELD, PayloadGroups, group_id

# the constructed atlas of conftest.make_atlas: four cell types, two tissues, two diseases
T_CELL = "CL:0000084"
VALUES = {
    "cell_type_ancestors": [T_CELL, "CL:0000542", "CL:0000236", "CL:9999999"],
    "cell_type_id": ["CL:0000624", "CL:0000625", "CL:0000236", "CL:0000235"],
    "tissue_ancestors": ["UBERON:0002048", "UBERON:0000178"],
    "disease_id": ["PATO:0000461", "MONDO:0005068"],
    "study_id": ["study0", "study1", "study2"],
    "dataset_id": ["study0-d0", "study1-d1"],
    "donor_id": ["donor0", "donor3"],
}
FILTERS = st.builds(
    lambda must, must_not: SearchFilter(must=must, must_not=must_not),
    st.dictionaries(
        st.sampled_from(sorted(VALUES)),
        st.lists(st.sampled_from(VALUES["study_id"] + VALUES["cell_type_id"]), max_size=0),
        max_size=0,
    )
    | st.sampled_from(sorted(VALUES)).flatmap(
        lambda f: st.fixed_dictionaries({f: st.lists(st.sampled_from(VALUES[f]), min_size=1)})
    ),
    st.sampled_from(sorted(VALUES)).flatmap(
        lambda f: st.fixed_dictionaries({f: st.lists(st.sampled_from(VALUES[f]), max_size=2)})
    ),
)


def _shared(rec) -> dict:
    return {k: v for k, v in rec.full_payload().items() if k != "cell_id"}


@pytest.fixture(scope="module")
def atlas_small(atlas_factory):
    return atlas_factory(n_per_type=12, seed=3)


@pytest.fixture(scope="module")
def table(tmp_path_factory, atlas_small) -> PayloadGroups:
    groups = PayloadGroups(tmp_path_factory.mktemp("groups"))
    groups.add(_shared(r) for r in atlas_small)
    return groups


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(flt=FILTERS)
def test_selected_groups_are_exactly_the_matching_cells(table, atlas_small, flt):
    selected = set(table.select(flt).tolist())
    for rec in atlas_small:
        assert (group_id(_shared(rec)) in selected) == flt.matches(rec.full_payload())


def test_group_ids_are_stable_and_ignore_key_order():
    a = {"study_id": "s1", "cell_type_ancestors": ["CL:1", "CL:2"]}
    b = dict(reversed(list(a.items())))
    assert group_id(a) == group_id(b) == group_id({**a, GROUP_FIELD: 123})
    assert group_id(a) != group_id({**a, "study_id": "s2"})
    assert 0 <= group_id(a) < 2**63


def test_table_survives_reopening_and_forgets_deleted_datasets(tmp_path, atlas_small):
    groups = PayloadGroups(tmp_path)
    ids = groups.add([_shared(r) for r in atlas_small] * 2)  # each payload twice
    distinct = len(set(ids))
    assert len(ids) == 2 * len(atlas_small) and len(groups) == distinct
    assert groups.add([_shared(atlas_small[0])]) == [ids[0]]  # nothing new is appended
    lines = (tmp_path / FILE_NAME).read_text().splitlines()
    assert len(lines) == distinct
    reopened = PayloadGroups(tmp_path)
    flt = SearchFilter(must={"cell_type_ancestors": [T_CELL]})
    assert sorted(reopened.select(flt).tolist()) == sorted(groups.select(flt).tolist())
    dropped = reopened.remove_dataset("study0-d0")
    assert dropped > 0
    again = PayloadGroups(tmp_path)
    assert len(again) == distinct - dropped
    assert again.select(SearchFilter(must={"dataset_id": ["study0-d0"]})).size == 0


@pytest.fixture
def edge(fast_tmp, atlas_small):
    store = open_store(path=fast_tmp)
    store.upsert(atlas_small)
    yield store
    store.close()


CASES = [
    SearchFilter(must={"cell_type_ancestors": [T_CELL]}),
    SearchFilter(must={"cell_type_ancestors": [T_CELL], "tissue_ancestors": ["UBERON:0002048"]}),
    SearchFilter(must={"study_id": ["study1"]}, must_not={"disease_id": ["PATO:0000461"]}),
    SearchFilter(must_not={"cell_type_ancestors": ["CL:0000542"]}),
    SearchFilter(must={"cell_type_id": ["CL:0000235"], "study_id": ["nope"]}),  # nothing
    SearchFilter(must={"cell_id": ["cell0003", "cell0040"]}),  # per cell: not compiled
]


@pytest.mark.integration
@pytest.mark.parametrize(("case", "flt"), list(enumerate(CASES)))
def test_compiled_filters_count_and_search_exactly(edge, atlas_small, case, flt):
    expected = [r for r in atlas_small if flt.matches(r.full_payload())]
    assert edge.count(flt) == len(expected)
    (hits,) = edge.search(atlas_small[case].vector, k=len(atlas_small), filter=flt)
    assert sorted(h.cell_id for h in hits) == sorted(r.cell_id for r in expected)
    assert all(GROUP_FIELD not in h.payload for h in hits)


@pytest.mark.integration
def test_every_point_carries_its_group_and_deletion_updates_the_table(edge, atlas_small):
    per_group: dict[int, list[str]] = {}
    for rec in atlas_small:
        per_group.setdefault(group_id(_shared(rec)), []).append(rec.cell_id)
    for gid, cells in itertools.islice(per_group.items(), 5):
        raw = qe.Filter(must=[qe.FieldCondition(key=GROUP_FIELD, match=qe.MatchAny([gid]))])
        assert edge._shard.count(qe.CountRequest(exact=True, filter=raw)) == len(cells)
    before = len(edge._groups)
    edge.delete_dataset("study1-d1")
    assert len(edge._groups) < before
    flt = SearchFilter(must={"study_id": ["study1"]})
    assert edge.count(flt) == sum(
        flt.matches(r.full_payload()) and r.dataset_id != "study1-d1" for r in atlas_small
    )


@pytest.mark.integration
def test_a_shard_without_a_table_gets_one_when_opened(fast_tmp, atlas_small):
    """Stores made before payload groups: opening one builds its table and tags its points."""
    store = EdgeStore(fast_tmp / "legacy")
    store.upsert(atlas_small)
    store.optimize()  # tagging an indexed shard, as a real migration does
    store.close()
    (fast_tmp / "legacy" / FILE_NAME).unlink()
    store = EdgeStore(fast_tmp / "legacy")
    try:
        assert (fast_tmp / "legacy" / FILE_NAME).exists()
        assert len(store._groups) == len({group_id(_shared(r)) for r in atlas_small})
        for flt in CASES:
            assert store.count(flt) == sum(flt.matches(r.full_payload()) for r in atlas_small)
        raw = qe.Filter(must=[qe.FieldCondition(key=GROUP_FIELD, match=qe.MatchAny([-1]))])
        assert store._shard.count(qe.CountRequest(exact=True, filter=raw)) == 0
        untagged = qe.Filter(must=[qe.IsEmptyCondition(key=GROUP_FIELD)])
        assert store._shard.count(qe.CountRequest(exact=True, filter=untagged)) == 0
    finally:
        store.close()


@pytest.mark.integration
def test_reopened_store_reloads_its_table(fast_tmp, atlas_small):
    store = EdgeStore(fast_tmp / "s")
    store.upsert(atlas_small)
    n_groups = len(store._groups)
    store.close()
    store = EdgeStore(fast_tmp / "s")
    try:
        assert len(store._groups) == n_groups
        flt = CASES[1]
        assert store.count(flt) == sum(flt.matches(r.full_payload()) for r in atlas_small)
        rng = np.random.default_rng(0)
        (hits,) = store.search(rng.normal(size=128), k=5, filter=flt)
        assert len(hits) == 5 and all(flt.matches(h.payload) for h in hits)
    finally:
        store.close()


def test_index_grows_with_adds_between_queries(tmp_path, atlas_small):
    """A store that ingests while it serves: cached postings never go stale."""
    live = PayloadGroups(tmp_path / "live")
    flt = SearchFilter(must={"cell_type_ancestors": [T_CELL]}, must_not={"study_id": ["study2"]})
    for start in range(0, len(atlas_small), 7):
        live.add(_shared(r) for r in atlas_small[start : start + 7])
        seen = atlas_small[: start + 7]
        expected = {group_id(_shared(r)) for r in seen if flt.matches(r.full_payload())}
        assert set(live.select(flt).tolist()) == expected


@pytest.mark.integration
@pytest.mark.parametrize("limit", [0, 1, 10_000])
def test_broad_filters_past_the_group_limit_go_as_they_are(edge, atlas_small, limit):
    """Whichever form a filter takes (compiled or not), the same cells come back."""
    from dataclasses import replace

    edge.config = replace(edge.config, compile_max_groups=limit)
    for flt in CASES:
        expected = sorted(r.cell_id for r in atlas_small if flt.matches(r.full_payload()))
        (hits,) = edge.search(atlas_small[0].vector, k=len(atlas_small), filter=flt)
        assert sorted(h.cell_id for h in hits) == expected
        assert edge.count(flt) == len(expected)


@pytest.mark.integration
def test_only_conjunctions_within_the_group_limit_are_compiled(edge):
    def form(flt):
        compiled = edge._compile(flt)
        keys = [c.key for c in (compiled.must or [])] + [c.key for c in (compiled.must_not or [])]
        return "groups" if keys == [GROUP_FIELD] else "as is"

    assert form(CASES[0]) == "as is"  # one condition: Qdrant walks one posting list
    assert form(CASES[3]) == "as is"
    assert form(CASES[1]) == form(CASES[2]) == form(CASES[4]) == "groups"
    assert form(CASES[5]) == "as is"  # cell_id cannot be decided per group
    assert edge._compile(None) is None and edge._compile(SearchFilter()) is None


@pytest.mark.integration
def test_broad_filters_are_post_filtered_with_the_same_answers(edge, atlas_small):
    """Unfiltered candidates kept to the filter's groups == filtered search, hit for hit."""
    from dataclasses import replace

    edge.config = replace(edge.config, post_filter_min_share=0.3)
    broad = SearchFilter(must_not={"cell_type_id": ["CL:0000235"]})  # 3 of 4 types
    narrow = SearchFilter(must={"cell_type_id": ["CL:0000235"], "study_id": ["study0"]})
    assert edge._broad_groups(broad, 10) is not None
    assert edge._broad_groups(narrow, 10) is None
    assert edge._broad_groups(broad, 2000) is None  # too many candidates: filtered HNSW
    queries = np.stack([r.vector for r in atlas_small[::9]])
    post = edge.search(queries, k=10, filter=broad)
    edge.config = replace(edge.config, post_filter_min_share=None)
    plain = edge.search(queries, k=10, filter=broad)
    for a, b in zip(post, plain, strict=True):
        assert [h.cell_id for h in a] == [h.cell_id for h in b]
        assert [h.payload for h in a] == [h.payload for h in b]
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=1e-6)


@pytest.mark.integration
def test_post_filter_falls_back_when_the_neighbourhood_is_outside_the_filter(fast_tmp):
    """Groups are not cells: 300 macrophages share one payload, 300 other cells have one
    each, so 'not macrophage' matches ~all groups (post-filtered with 4k candidates) while a
    macrophage query's candidates are all macrophages. It must fall back, not come short."""
    from vectorstore import CellRecord

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2, 128))
    recs = [
        CellRecord(
            "d1", f"m{i}", centres[0] + 0.2 * rng.normal(size=128), {"cell_type_id": "CL:0000235"}
        )
        for i in range(300)
    ] + [
        CellRecord(
            "d1",
            f"t{i}",
            centres[1] + 0.2 * rng.normal(size=128),
            {"cell_type_id": "CL:0000084", "sample_id": f"s{i}"},
        )
        for i in range(300)
    ]
    store = open_store(path=fast_tmp, config=StoreConfig(post_filter_min_share=0.3))
    try:
        store.upsert(recs)
        flt = SearchFilter(must_not={"cell_type_id": ["CL:0000235"]})
        groups, share = store._broad_groups(flt, 30)
        assert share > 0.99
        assert store._post_filtered(centres[0][None, :], 30, (groups, share), False, None) == [None]
        (hits,) = store.search(centres[0], k=30, filter=flt, with_vectors=True)
        assert len(hits) == 30 and all(h.cell_id.startswith("t") for h in hits)
        assert all(h.vector is not None and h.vector.shape == (128,) for h in hits)
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
    finally:
        store.close()


def test_contains_answers_membership_by_binary_search(table, atlas_small):
    flt = SearchFilter(must={"cell_type_ancestors": [T_CELL]})
    rows = table.match_rows(flt)
    gids = np.array([group_id(_shared(r)) for r in atlas_small] + [-1, 2**62], dtype=np.int64)
    expected = [flt.matches(r.full_payload()) for r in atlas_small] + [False, False]
    assert table.contains(rows, gids).tolist() == expected
