"""Unit tests on the tiny hand-written ontology: every rule of the API on a graph small enough
to check by eye."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

from ontology import (
    AmbiguousTermError,
    EmptyTermError,
    KindMismatchError,
    MalformedTermError,
    ObsoleteTermError,
    ObsoleteTermWarning,
    Ontology,
    OntologyError,
    UnknownPrefixError,
    UnknownTermError,
)

CELL, IMMUNE, T, B, CD4, HYBRID, GRANULE, KILLER, ROOT2 = (f"CL:000000{i}" for i in range(9))


# ----------------------------------------------------------------------------- resolve


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("CL:0000002", T),
        ("cl:0000002", T),
        ("CL_0000002", T),
        (" CL:0000002 ", T),
        ("T cell", T),
        ("t CELL", T),
        ("  T   cell ", T),
        ("T lymphocyte", T),
        ("b LYMPHOCYTE", B),
        ("hybrid cell", HYBRID),
    ],
)
def test_resolve_accepts_ids_labels_synonyms_ignoring_case_and_spaces(tiny, text, expected):
    assert tiny.resolve(text) == expected


def test_a_label_beats_another_terms_synonym(tiny):
    # "killer" is CL:0000007's label and a synonym of CD4 T cell.
    assert tiny.resolve("killer") == KILLER


def test_a_synonym_shared_by_two_terms_is_ambiguous_and_lists_them(tiny):
    with pytest.raises(AmbiguousTermError) as err:
        tiny.resolve("lymphocyte")
    assert set(err.value.candidates) == {T, B}
    assert T in str(err.value)
    assert B in str(err.value)


def test_unknown_name_suggests_the_closest_terms(tiny):
    with pytest.raises(UnknownTermError) as err:
        tiny.resolve("T cel")
    assert err.value.suggestions[0] == T
    assert "T cell" in str(err.value)


def test_unknown_id_of_the_right_prefix(tiny):
    with pytest.raises(UnknownTermError, match="CL:0009999"):
        tiny.resolve("CL:0009999")


def test_obsolete_term_follows_replaced_by_with_a_warning(tiny):
    with pytest.warns(ObsoleteTermWarning, match="CL:0000010"):
        assert tiny.resolve("CL:0000010") == B


def test_obsolete_label_resolves_through_its_replacement(tiny):
    with pytest.warns(ObsoleteTermWarning):
        assert tiny.resolve("old B cell") == B


def test_replacement_chains_are_followed(tiny):
    with pytest.warns(ObsoleteTermWarning, match="CL:0000012"):
        assert tiny.resolve("CL:0000012") == B


def test_obsolete_without_replacement_fails_clearly(tiny):
    with pytest.raises(ObsoleteTermError) as err:
        tiny.resolve("CL:0000011")
    assert err.value.replaced_by is None
    assert err.value.consider == [T]
    assert "obsolete" in str(err.value)
    assert tiny.is_obsolete("CL:0000011")
    assert not tiny.is_obsolete(T)


def test_hierarchy_questions_about_obsolete_terms_raise(tiny):
    for call in (tiny.ancestors, tiny.descendants):
        with pytest.raises(ObsoleteTermError):
            call("CL:0000011")
    with pytest.raises(ObsoleteTermError):
        tiny.is_related("CL:0000010", B)


def test_live_resolution_never_warns(tiny):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tiny.resolve("B cell") == B


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("text", ["", "   ", "\t\n"])
def test_empty_text_is_an_empty_term_error(tiny, text):
    with pytest.raises(EmptyTermError):
        tiny.resolve(text)
    with pytest.raises(EmptyTermError):
        tiny.ancestors(text)


@pytest.mark.parametrize("text", ["CL:", "CL:abc", "CL0000002", "CL:00 02"])
def test_malformed_ids_are_malformed_term_errors(tiny, text):
    with pytest.raises(MalformedTermError) as err:
        tiny.resolve(text)
    assert not isinstance(err.value, EmptyTermError)


@pytest.mark.parametrize("text", ["FOO:0000001", "GO:0005811"])
def test_unknown_prefixes_are_unknown_prefix_errors(tiny, text):
    with pytest.raises(UnknownPrefixError, match="prefix"):
        tiny.resolve(text)
    with pytest.raises(UnknownPrefixError):
        tiny.label(text)


def test_an_id_of_another_kind_is_a_kind_mismatch(tiny):
    with pytest.raises(KindMismatchError, match="tissue"):
        tiny.resolve("UBERON:0002048")


def test_non_strings_are_rejected(tiny):
    with pytest.raises(MalformedTermError):
        tiny.resolve(None)  # type: ignore[arg-type]
    with pytest.raises(MalformedTermError):
        tiny.label(2)  # type: ignore[arg-type]


def test_every_error_is_a_value_error():
    for cls in (MalformedTermError, UnknownPrefixError, UnknownTermError, ObsoleteTermError):
        assert issubclass(cls, OntologyError)
        assert issubclass(cls, ValueError)


# ----------------------------------------------------------------------------- closures


def test_label_and_synonyms(tiny):
    assert tiny.label(T) == "T cell"
    assert "T lymphocyte" in tiny.synonyms(T)
    assert tiny.label("CL:0000011") == "obsolete vague cell"


def test_ancestors_follow_is_a_through_a_diamond(tiny):
    assert tiny.ancestors(HYBRID) == {HYBRID, CD4, T, B, IMMUNE, CELL}
    assert tiny.ancestors(HYBRID, include_self=False) == {CD4, T, B, IMMUNE, CELL}
    assert tiny.ancestors(CELL) == {CELL}


def test_part_of_is_in_the_closure(tiny):
    # the granule is part_of a T cell: it counts as a T-cell descendant, but is not a cell.
    assert tiny.ancestors(GRANULE) == {GRANULE, T, IMMUNE, CELL}
    assert GRANULE in tiny.descendants(T)


def test_descendants_are_the_inverse_of_ancestors(tiny):
    live = list(tiny.term_ids())
    for a, b in itertools.product(live, live):
        assert (a in tiny.ancestors(b)) == (b in tiny.descendants(a))
    assert tiny.descendants(B, include_self=False) == {HYBRID}


def test_ancestor_distances_are_shortest_paths(tiny):
    assert tiny.ancestor_distances(HYBRID) == {CD4: 1, B: 1, T: 2, IMMUNE: 2, CELL: 3}


def test_is_related_is_the_triplet_rule(tiny):
    assert tiny.is_related(T, T)
    assert tiny.is_related(T, CD4)
    assert tiny.is_related(CD4, T)
    assert tiny.is_related(CELL, HYBRID)
    assert not tiny.is_related(T, B)  # siblings
    assert not tiny.is_related(CD4, B)
    assert not tiny.is_related(ROOT2, CELL)


@pytest.mark.parametrize(
    ("terms", "expected"),
    [
        ([CD4, B], IMMUNE),
        ([HYBRID, CD4], CD4),
        ([HYBRID, B, CD4], IMMUNE),
        ([T], T),
        ([GRANULE, CD4], T),
        ([ROOT2, T], None),
        ([], None),
    ],
)
def test_lowest_common_ancestor(tiny, terms, expected):
    assert tiny.lowest_common_ancestor(terms) == expected


def test_related_matrix_matches_is_related_pairwise(tiny):
    terms = [*tiny.term_ids(), T, HYBRID, CELL]  # duplicates included
    matrix = tiny.related_matrix(terms)
    assert matrix.shape == (len(terms), len(terms))
    assert matrix.dtype == np.bool_
    expected = np.array([[tiny.is_related(a, b) for b in terms] for a in terms])
    np.testing.assert_array_equal(matrix, expected)
    assert tiny.related_matrix([]).shape == (0, 0)


def test_related_matrix_rejects_obsolete_terms(tiny):
    with pytest.raises(ObsoleteTermError):
        tiny.related_matrix([T, "CL:0000011"])


# ----------------------------------------------------------------------------- the cache


def test_the_closure_cache_is_written_once_and_reused(tiny, tiny_cache, tiny_obo):
    assert tiny.cache_path is not None
    assert tiny.cache_path.parent == tiny_cache
    stamp = tiny.cache_path.stat().st_mtime_ns
    again = Ontology.from_file(tiny_obo, "cell_type", cache_dir=tiny_cache)
    assert again.cache_path == tiny.cache_path
    assert tiny.cache_path.stat().st_mtime_ns == stamp
    assert again.ancestors(HYBRID) == tiny.ancestors(HYBRID)


def test_a_corrupt_cache_file_is_rebuilt(tmp_path, tiny_obo):
    first = Ontology.from_file(tiny_obo, "cell_type", cache_dir=tmp_path)
    first.cache_path.write_bytes(b"not a zip file")
    again = Ontology.from_file(tiny_obo, "cell_type", cache_dir=tmp_path)
    assert again.resolve("T cell") == T
    assert again.cache_path.stat().st_size > 100


def test_a_changed_source_gets_its_own_cache(tmp_path, tiny_obo):
    src = tmp_path / "tiny.obo"
    src.write_text(tiny_obo.read_text())
    first = Ontology.from_file(src, "cell_type", cache_dir=tmp_path / "c")
    src.write_text(
        tiny_obo.read_text() + "\n[Term]\nid: CL:0000020\nname: new cell\nis_a: CL:0000000\n"
    )
    second = Ontology.from_file(src, "cell_type", cache_dir=tmp_path / "c")
    assert second.cache_path != first.cache_path
    assert second.resolve("new cell") == "CL:0000020"


def test_a_file_without_terms_of_the_kind_is_refused(tmp_path, tiny_obo):
    with pytest.raises(ValueError, match="no tissue terms"):
        Ontology.from_file(tiny_obo, "tissue", cache_dir=tmp_path)
