"""The evaluation's scoring maths on hand-made arrays and a tiny hand-written ontology."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.eval import knn, metrics

# A tiny CL-like tree (reflexive ancestor sets):
# cell > T > CD4 > naive CD4 ; T > CD8 ; cell > B
_PARENTS = {"cell": None, "T": "cell", "CD4": "T", "nCD4": "CD4", "CD8": "T", "B": "cell"}


def anc(term: str) -> frozenset[str]:
    out = set()
    while term is not None:
        out.add(term)
        term = _PARENTS[term]
    return frozenset(out)


def test_partial_credit_exact_ancestor_sibling_descendant_unknown():
    assert metrics.partial_credit("nCD4", "nCD4", anc) == 1.0
    # parent: |{CD4,T,cell}| / |{nCD4,CD4,T,cell}|
    assert metrics.partial_credit("nCD4", "CD4", anc) == pytest.approx(3 / 4)
    assert metrics.partial_credit("nCD4", "T", anc) == pytest.approx(2 / 4)
    assert metrics.partial_credit("nCD4", "cell", anc) == pytest.approx(1 / 4)
    assert metrics.partial_credit("nCD4", "CD8", anc) == 0.0  # sibling branch
    assert metrics.partial_credit("CD4", "nCD4", anc) == 0.0  # over-specific claim
    assert metrics.partial_credit("CD4", metrics.UNKNOWN, anc) == 0.0


def test_ontology_score_lies_between_accuracy_and_consistency():
    truth = ["nCD4", "nCD4", "CD8", "B"]
    pred = ["nCD4", "T", "CD4", "B"]
    score = metrics.ontology_score(truth, pred, anc)
    assert score == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    assert metrics.accuracy(truth, pred) == 0.5 < score


def test_macro_f1_weighs_rare_classes_equally():
    truth = ["A"] * 8 + ["B"] * 2
    pred = ["A"] * 10  # every B missed
    # F1(A) = 2*8/(16+2+0) = 8/9 ; F1(B) = 0
    assert metrics.macro_f1(truth, pred) == pytest.approx((8 / 9) / 2)
    assert metrics.accuracy(truth, pred) == pytest.approx(0.8)
    assert metrics.macro_f1(truth, truth) == 1.0


def test_length_mismatch_is_refused():
    with pytest.raises(ValueError, match="differ in length"):
        metrics.accuracy(["A"], ["A", "B"])


def test_precision_at_k():
    q = ["A", "B"]
    nb = np.array([["A", "A", "B"], ["B", "C", "C"]], dtype=object)
    assert metrics.precision_at_k(q, nb) == pytest.approx((2 / 3 + 1 / 3) / 2)
    with pytest.raises(ValueError, match="n_queries"):
        metrics.precision_at_k(["A"], nb)


def test_auroc_matches_pairwise_definition_with_ties():
    rng = np.random.default_rng(0)
    pos = rng.integers(0, 5, 40).astype(float)
    neg = rng.integers(0, 4, 30).astype(float)
    pairwise = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert metrics.auroc(pos, neg) == pytest.approx(pairwise)
    assert metrics.auroc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    assert metrics.auroc(np.array([0.0]), np.array([1.0])) == 0.0


def test_integration_total_is_scib_weighting():
    assert metrics.integration_total(1.0, 0.0) == pytest.approx(0.6)
    assert metrics.integration_total(0.5, 1.0) == pytest.approx(0.7)


def test_ontology_vote_prefers_most_specific_consistent_label():
    # 4 coarse "T" labels are consistent with the 3 fine "nCD4": the fine term wins.
    labels = ["T"] * 4 + ["nCD4"] * 3 + ["B"] * 3
    assert knn.majority_vote(labels) == "T"
    assert knn.ontology_vote(labels, anc) == "nCD4"


def test_ontology_vote_needs_support_and_falls_back_to_majority():
    # no candidate is consistent with half the neighbours (3, 4 and 3 of 10): plain majority
    labels = ["nCD4"] * 3 + ["CD8"] * 4 + ["B"] * 3
    assert knn.ontology_vote(labels, anc) == "CD8" == knn.majority_vote(labels)
    # no label reaches half: plain majority (first seen among ties)
    assert knn.ontology_vote(["B", "CD8", "nCD4"], anc) == "B"


def test_neighbours_exclude_self():
    x = np.array([[0.0], [1.0], [3.0]])
    dist, idx = knn.neighbours(x, x, 1, exclude_self=True)
    assert idx.ravel().tolist() == [1, 0, 1]
    assert dist.ravel().tolist() == [1.0, 1.0, 2.0]


def test_choose_query_studies_keeps_a_reference_study_per_tissue():
    import pandas as pd

    from benchmarks.eval.datasets import choose_query_studies

    studies = pd.DataFrame(
        {
            "study_id": [f"s{i}" for i in range(7)],
            "tissue": ["blood", "blood", "blood", "lung", "lung", "liver", "kidney"],
        }
    )
    chosen = choose_query_studies(studies, 0.5, seed=1)
    assert len(chosen) == 3  # blood can give 2, lung 1; liver/kidney have one study each
    tissue = dict(zip(studies["study_id"], studies["tissue"], strict=True))
    left = set(studies["study_id"]) - set(chosen)
    assert {tissue[s] for s in left} == {"blood", "lung", "liver", "kidney"}
    assert choose_query_studies(studies, 0.5, seed=1) == chosen  # deterministic


def test_perf_size_args_pick_the_smallest_advertised_size():
    from benchmarks.eval.perf import size_args

    assert size_args("usage: x [--quick] [--json PATH]") == ["--quick"]
    assert size_args("  --size {large,small,tiny}  how big") == ["--size", "tiny"]
    assert size_args("usage: x [--n-points N]") == []


def test_report_losses_name_the_winner():
    import pandas as pd

    from benchmarks.eval.report import losses, wins

    frame = pd.DataFrame(
        {"kNN accuracy": [0.9, 0.8, 0.7], "scib batch": [0.4, 0.6, 0.5]},
        index=["cellsearch", "scvi", "pca"],
    )
    lost = losses(frame)
    assert len(lost) == 1
    assert "scib batch" in lost[0]
    assert "scvi 0.600" in lost[0]
    assert wins(frame) == ["kNN accuracy (0.900)"]
