"""Queries by vector, by stored cells and by centroid, with their limits and errors."""

from __future__ import annotations

import numpy as np
import pytest
from search_atlas import B_CELL, CD4, CD8, NK, sample_cells

from cellsearch.search.errors import (
    InvalidQueryError,
    KTooLargeError,
    TooManyQueryCellsError,
    UnknownCellError,
)
from cellsearch.search.filters import FilterSpec
from cellsearch.search.query import (
    QueryLimits,
    centroid_of,
    search_cells,
    search_centroid,
    search_vectors,
)

pytestmark = pytest.mark.integration


def ref(rec):
    return (rec.dataset_id, rec.cell_id)


def test_k_above_the_limit_is_refused_clearly(store):
    with pytest.raises(KTooLargeError, match="k=51 is above this service's limit of 50") as info:
        search_vectors(store, np.ones(128), 51, limits=QueryLimits(max_k=50))
    assert isinstance(info.value, ValueError)
    assert info.value.max_k == 50
    with pytest.raises(InvalidQueryError, match="at least 1"):
        search_vectors(store, np.ones(128), 0)


def test_too_many_query_vectors(store):
    with pytest.raises(TooManyQueryCellsError, match="split it into batches"):
        search_vectors(store, np.ones((3, 128)), 5, limits=QueryLimits(max_query_cells=2))


def test_search_vectors_with_a_named_filter(store):
    (hits,) = search_vectors(
        store, sample_cells(CD4, 1, seed=7), 20, FilterSpec(tissues=["lung"], studies=["study2"])
    )
    assert hits and all(h.payload["tissue_id"] == "UBERON:0002048" for h in hits)
    assert {h.payload["study_id"] for h in hits} == {"study2"}
    assert hits[0].payload["cell_type_id"] == CD4


def test_search_cells_excludes_itself_and_its_own_study(store, atlas):
    query = next(r for r in atlas if r.payload["cell_type_id"] == NK)
    (hits,) = search_cells(store, [ref(query)], 10)
    assert len(hits) == 10
    assert query.cell_id not in {h.cell_id for h in hits}
    assert query.payload["study_id"] in {h.payload["study_id"] for h in hits}
    (other,) = search_cells(store, [ref(query)], 10, FilterSpec(exclude_query_studies=True))
    assert len(other) == 10
    assert query.payload["study_id"] not in {h.payload["study_id"] for h in other}
    assert {h.payload["cell_type_id"] for h in other} == {NK}


def test_search_cells_by_bare_cell_id(store, atlas):
    query = atlas[3]
    (hits,) = search_cells(store, [query.cell_id], 5, exclude_self=False)
    assert hits[0].cell_id == query.cell_id


def test_unknown_query_cells_are_named(store, atlas):
    with pytest.raises(UnknownCellError, match=r"1 query cell\(s\) are not in the atlas: x/nope"):
        search_cells(store, [ref(atlas[0]), ("x", "nope")], 5)
    assert issubclass(UnknownCellError, LookupError)


def test_centroid_of_coherent_cells_has_high_coherence(store, atlas):
    cd4 = [ref(r) for r in atlas if r.payload["cell_type_id"] == CD4][:30]
    res = search_centroid(store, 60, cells=cd4, coherence_k=20)
    assert res.n_query_cells == 30
    assert len(res.hits) == 60
    assert not {(h.dataset_id, h.cell_id) for h in res.hits} & set(cd4)
    assert {h.payload["cell_type_id"] for h in res.hits[:10]} == {CD4}
    assert res.coherence is not None and res.coherence > 0.6
    np.testing.assert_allclose(np.linalg.norm(res.centroid), 1.0, atol=1e-5)


def test_centroid_of_mixed_cells_has_low_coherence(store):
    mixed = np.concatenate([sample_cells(t, 10, seed=9) for t in (CD4, B_CELL, NK)])
    coherent = sample_cells(CD8, 30, seed=9)
    low = search_centroid(store, 60, vectors=mixed, coherence_k=20)
    high = search_centroid(store, 60, vectors=coherent, coherence_k=20)
    assert low.coherence < 0.5 < high.coherence


def test_centroid_needs_exactly_one_kind_of_query(store, atlas):
    with pytest.raises(InvalidQueryError, match="exactly one"):
        search_centroid(store, 5)
    with pytest.raises(InvalidQueryError, match="no direction"):
        centroid_of(np.stack([np.ones(128), -np.ones(128)]))
