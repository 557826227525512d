"""Integration tests on the real CL, UBERON and MONDO shipped by cellxgene-ontology-guide,
through the module-level API (the process-wide ontologies built into a temp cache)."""

from __future__ import annotations

import time

import numpy as np
import pytest

import ontology
from ontology import (
    AmbiguousTermError,
    KindMismatchError,
    ObsoleteTermError,
    ObsoleteTermWarning,
    Ontology,
    UnknownPrefixError,
    UnknownTermError,
)

pytestmark = pytest.mark.integration

T_CELL, B_CELL, CD4_AB_T = "CL:0000084", "CL:0000236", "CL:0000624"


def test_the_three_kinds_load_with_their_expected_sizes(real):
    assert 3_000 < len(real["cell_type"]) < 6_000
    assert 12_000 < len(real["tissue"]) < 25_000
    assert 25_000 < len(real["disease"]) < 45_000
    assert real["cell_type"].name == "CL"
    assert real["disease"].version.startswith("v")


def test_resolve_the_issue_examples(real):
    assert ontology.resolve("lung", "tissue") == "UBERON:0002048"
    assert ontology.resolve("interstitial lung disease", "disease") == "MONDO:0015925"
    assert ontology.resolve("B cell", "cell_type") == B_CELL
    assert ontology.resolve("b-lymphocyte", "cell_type") == B_CELL  # a synonym
    assert ontology.resolve(" T   Cell ", "cell_type") == T_CELL
    assert ontology.resolve("CL:0000236", "cell_type") == B_CELL


def test_cd4_ab_t_cell_descends_from_t_cell(real):
    assert T_CELL in ontology.ancestors(CD4_AB_T)
    assert CD4_AB_T in ontology.descendants(T_CELL)
    assert ontology.is_related(T_CELL, CD4_AB_T)
    assert ontology.is_related(CD4_AB_T, T_CELL)


def test_b_cell_and_t_cell_are_not_related(real):
    assert not ontology.is_related(B_CELL, T_CELL)
    assert ontology.lowest_common_ancestor([B_CELL, T_CELL]) == "CL:0000542"  # lymphocyte


def test_idiopathic_pulmonary_fibrosis_id_is_reported_obsolete(real):
    with pytest.raises(ObsoleteTermError) as err:
        ontology.resolve("MONDO:0008345", "disease")
    assert err.value.replaced_by is None
    assert "MONDO:0800504" in err.value.consider
    # its name now belongs to a live term, which wins over the obsolete one
    assert ontology.resolve("idiopathic pulmonary fibrosis", "disease") == "MONDO:0800504"


def test_obsolete_term_with_replacement_warns_and_follows_it(real):
    with pytest.warns(ObsoleteTermWarning, match="CL:0000003"):
        assert ontology.resolve("CL:0000003", "cell_type") == "CL:0000000"


def test_replacement_in_another_ontology_is_reported_not_followed(real):
    with pytest.raises(ObsoleteTermError) as err:
        ontology.resolve("CL:0000002", "cell_type")  # replaced by CLO:0000019
    assert err.value.replaced_by == "CLO:0000019"


def test_normal_is_a_disease_kind_term_of_its_own(real):
    assert ontology.kind_of("PATO:0000461") == "disease"
    assert ontology.resolve("normal", "disease") == "PATO:0000461"
    assert ontology.ancestors("PATO:0000461") == {"PATO:0000461"}
    assert ontology.descendants("PATO:0000461") == {"PATO:0000461"}
    assert not ontology.is_related("PATO:0000461", "MONDO:0015925")
    assert ontology.label("PATO:0000461") == "normal"


def test_a_lung_filter_reaches_lung_parts_through_part_of(real):
    lung_parts = ontology.descendants("UBERON:0002048")
    assert "UBERON:0002299" in lung_parts  # alveolus of lung: part_of lung
    assert "UBERON:0002048" in ontology.ancestors("UBERON:0002299")


def test_bad_inputs_on_real_ontologies(real):
    with pytest.raises(UnknownPrefixError):
        ontology.kind_of("GO:0005811")
    with pytest.raises(KindMismatchError):
        ontology.resolve("UBERON:0002048", "cell_type")
    with pytest.raises(KindMismatchError):
        ontology.lowest_common_ancestor([T_CELL, "UBERON:0002048"])
    with pytest.raises(UnknownTermError) as err:
        ontology.resolve("lugn", "tissue")
    assert "UBERON:0002048" in err.value.suggestions
    with pytest.raises(AmbiguousTermError) as amb:
        ontology.resolve("acid beta-glucosidase deficiency", "disease")  # two terms' synonym
    assert len(amb.value.candidates) > 1


def test_related_matrix_across_kinds_and_against_pairwise(real):
    terms = [T_CELL, CD4_AB_T, B_CELL, "UBERON:0002048", "UBERON:0002299", "CL:0000000"]
    matrix = ontology.related_matrix(terms)
    expected = np.array(
        [
            [
                ontology.kind_of(a) == ontology.kind_of(b) and ontology.is_related(a, b)
                for b in terms
            ]
            for a in terms
        ]
    )
    np.testing.assert_array_equal(matrix, expected)


def test_warm_load_from_the_cache_is_fast(real, real_cache):
    for kind in ontology.KINDS:
        start = time.perf_counter()
        onto = Ontology.load(kind, cache_dir=real_cache)
        assert onto.resolve(onto.label(next(onto.term_ids())))  # the name index is usable
        assert time.perf_counter() - start < 1.0
        assert onto.cache_path == real[kind].cache_path
