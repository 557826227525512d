"""FilterSpec -> one store filter: ontology resolution, descendants, studies."""

from __future__ import annotations

import pytest
from search_atlas import B_CELL, CD4, CD8, COVID, LUNG, T_CELL

from cellsearch.search.errors import FilterTermError, InvalidQueryError
from cellsearch.search.filters import FilterSpec, build_filter, labels_filter
from vectorstore import SearchFilter


def test_terms_by_name_expand_to_their_descendants_on_the_id_fields():
    flt = build_filter(FilterSpec(cell_types=["T cell"], tissues="lung", diseases=["COVID-19"]))
    assert set(flt.must) == {"cell_type_id", "tissue_id", "disease_id"}
    assert {T_CELL, CD4, CD8} <= set(flt.must["cell_type_id"])
    assert B_CELL not in flt.must["cell_type_id"]
    assert LUNG in flt.must["tissue_id"]
    assert COVID in flt.must["disease_id"]


def test_a_term_with_very_many_descendants_matches_through_the_ancestor_list():
    flt = build_filter(FilterSpec(cell_types=["cell"]))
    assert flt.must == {"cell_type_ancestors": ("CL:0000000",)}


def test_terms_outside_the_bundled_ontology_fall_back_to_ancestor_lists():
    flt = build_filter(
        FilterSpec(cell_types=["CL:9999999"]),
        resolve=lambda text, kind: text,
    )
    assert flt.must == {"cell_type_ancestors": ("CL:9999999",)}


def test_exact_terms_match_the_term_only():
    flt = build_filter(FilterSpec(cell_types=[CD4], exact_terms=True))
    assert flt.must == {"cell_type_id": (CD4,)}


def test_excluded_terms_always_take_their_descendants():
    flt = build_filter(FilterSpec(exclude_cell_types=["T cell"], exact_terms=True))
    assert flt.must_not == {"cell_type_ancestors": (T_CELL,)}


def test_unresolvable_term_is_an_invalid_query_with_suggestions():
    with pytest.raises(FilterTermError, match="filter cell_types: cannot use 'T cel'") as info:
        build_filter(FilterSpec(cell_types=["T cel"]))
    assert T_CELL in info.value.suggestions
    assert isinstance(info.value, ValueError)


def test_wrong_kind_is_refused():
    with pytest.raises(FilterTermError, match="tissues"):
        build_filter(FilterSpec(tissues=[CD4]))


def test_studies_include_exclude_and_query_studies():
    flt = build_filter(FilterSpec(studies=["s1", "s2"], exclude_studies=["s2"]))
    assert flt.must == {"study_id": ("s1",)} and not flt.must_not
    flt = build_filter(FilterSpec(exclude_query_studies=True), query_studies=["s3", "s1"])
    assert flt.must_not == {"study_id": ("s1", "s3")}
    with pytest.raises(InvalidQueryError, match="excludes all of them"):
        build_filter(FilterSpec(studies=["s1"], exclude_query_studies=True), query_studies=["s1"])


def test_exclude_query_studies_without_known_studies_is_explained():
    with pytest.raises(InvalidQueryError, match="query by stored cell ids"):
        build_filter(FilterSpec(exclude_query_studies=True))


def test_empty_spec_is_no_filter():
    assert build_filter(FilterSpec()) is None
    assert build_filter(None) is None
    assert FilterSpec(donors=["d1"]).to_search_filter() == SearchFilter(must={"donor_id": ["d1"]})


def test_labels_filter_resolves_names_and_refuses_an_empty_safelist():
    flt = labels_filter(["B cell"], [CD8])
    assert flt.must == {"cell_type_id": (B_CELL,)}
    assert flt.must_not == {"cell_type_id": (CD8,)}
    with pytest.raises(InvalidQueryError, match="also blocklisted"):
        labels_filter([CD8], [CD8])
    assert labels_filter() is None


@pytest.mark.integration
def test_t_cell_filter_finds_cd4_and_cd8_cells_not_b_cells(store, atlas):
    b_cell = next(r for r in atlas if r.payload["cell_type_id"] == B_CELL)
    flt = build_filter(FilterSpec(cell_types=["T cell"]))
    (hits,) = store.search(b_cell.vector, k=100, filter=flt)
    assert len(hits) == 100
    assert {h.payload["cell_type_id"] for h in hits} == {CD4, CD8}
    assert store.count(flt) == 120
