"""Annotation on a constructed reference: vote, LCA fallback, unknown flag, safelist/blocklist."""

from __future__ import annotations

import numpy as np
import pytest
from search_atlas import B_CELL, CD4, CD8, CENTRES, MONOCYTE, NK, NOISE, T_CELL, sample_cells

import ontology
from services.search.annotate import (
    UNKNOWN,
    AnnotationConfig,
    Calibration,
    annotate,
    calibrate,
    vote,
)
from services.search.errors import EmptyReferenceError, InvalidQueryError
from vectorstore import Hit

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def calibration(store, atlas):
    sample = [(r.dataset_id, r.cell_id) for r in atlas[::2]]
    return calibrate(store, sample)


def test_calibration_holds_leave_one_out_distances(calibration):
    assert len(calibration.distances) == 120
    assert np.all(np.diff(calibration.distances) >= 0)
    assert calibration.distances[0] > 0  # the cell itself was left out
    assert calibration.confidence(0.0) == 1.0
    assert calibration.confidence(10.0) == 0.0


def test_cells_of_a_known_type_get_it_with_high_confidence(store, calibration):
    for ct, seed in ((CD4, 1), (B_CELL, 2), (NK, 3)):
        out = annotate(store, sample_cells(ct, 5, seed=seed), calibration)
        assert [a.label for a in out] == [ct] * 5
        assert all(a.confidence > 0.8 and not a.is_unknown for a in out)
        # in-distribution cells spread over the calibrated range, none at its far tail
        assert np.mean([a.representation for a in out]) > 0.2


def test_a_held_out_type_is_flagged_unknown(store, calibration):
    out = annotate(store, sample_cells(MONOCYTE, 5, seed=4), calibration)
    assert all(a.is_unknown and a.label == UNKNOWN for a in out)
    assert all(a.representation < 0.01 for a in out)
    assert all(a.best_fine_label in {CD4, CD8, B_CELL, NK} for a in out)


def test_a_cell_between_cd4_and_cd8_is_called_by_their_common_ancestor(store, calibration):
    rng = np.random.default_rng(5)
    mid = (CENTRES[CD4] + CENTRES[CD8]) / 2
    # a cell near the line between the two types: as close to the CD4 cells as to the CD8 ones
    queries = mid + 0.5 * NOISE * rng.normal(size=(5, 128))
    out = annotate(store, queries, calibration)
    lca = ontology.lowest_common_ancestor([CD4, CD8])
    assert T_CELL in ontology.ancestors(lca)
    split = [a for a in out if max(a.votes.values()) < 0.7]
    assert len(split) >= 3  # most such cells split their votes between CD4 and CD8
    for a in out:
        assert set(a.votes) == {CD4, CD8} and not a.is_unknown
        if a in split:
            assert (a.label, a.via_lca, a.confidence) == (lca, True, pytest.approx(1.0))
        else:  # a clear majority keeps its fine label
            assert a.label == a.best_fine_label and a.confidence >= 0.7 and not a.via_lca


def test_blocklist_and_safelist_restrict_the_voters(store, atlas):
    cfg = AnnotationConfig(blocklist=["CD4-positive, alpha-beta T cell"])
    cal = calibrate(store, [(r.dataset_id, r.cell_id) for r in atlas[::3]], config=cfg)
    out = annotate(store, sample_cells(CD4, 3, seed=6), cal, config=cfg)
    assert all(CD4 not in a.votes for a in out)
    assert all(a.best_fine_label == CD8 for a in out)
    safe = AnnotationConfig(safelist=[B_CELL, NK])
    out = annotate(store, sample_cells(CD4, 3, seed=6), cal_for(store, atlas, safe), config=safe)
    assert all(set(a.votes) <= {B_CELL, NK} for a in out)


def cal_for(store, atlas, cfg):
    return calibrate(store, [(r.dataset_id, r.cell_id) for r in atlas[::3]], config=cfg)


def test_calibration_must_match_the_config(store, calibration):
    with pytest.raises(InvalidQueryError, match="recalibrate"):
        annotate(
            store,
            sample_cells(CD4, 1, seed=1),
            calibration,
            config=AnnotationConfig(rep_neighbours=3),
        )


def _hit(label: str, distance: float, ancestors: list[str]) -> Hit:
    payload = {"cell_type_id": label, "cell_type_ancestors": ancestors}
    return Hit("c", "d", 1 - distance, distance, payload)


def test_vote_pools_at_the_ancestor_only_when_it_wins():
    hits = [_hit("A", 0.1, ["A", "root"])] * 4 + [_hit("B", 0.1, ["B", "root"])] * 3
    hits += [_hit("C", 0.1, ["C", "X"])] * 3
    label, conf, via_lca, _, shares = vote(hits, AnnotationConfig(), lca=lambda ids: "root")
    # A and B compete (C is under X, not root): pooled at "root" they hold 0.7 of the votes
    assert (label, via_lca) == ("root", True)
    assert conf == pytest.approx(0.7)
    assert shares["B"] == pytest.approx(0.3)
    label, conf, via_lca, fine, _ = vote(hits, AnnotationConfig(), lca=lambda ids: "X")
    assert (label, conf, via_lca, fine) == ("A", pytest.approx(0.4), False, "A")


def test_vote_weights_closer_neighbours_more():
    hits = [_hit("A", 0.01, ["A"])] + [_hit("B", 0.5, ["B"])] * 3
    label, conf, *_ = vote(hits, AnnotationConfig(min_confidence=0.5), lca=lambda ids: None)
    assert label == "A" and conf > 0.8


def test_vote_with_no_labels_is_an_empty_reference():
    with pytest.raises(EmptyReferenceError):
        vote([Hit("c", "d", 1.0, 0.0, {})], AnnotationConfig())


def test_calibration_confidence_is_the_upper_tail_share():
    cal = Calibration(np.array([0.1, 0.2, 0.3, 0.4]), 5)
    assert cal.confidence(0.25) == 0.5
    assert cal.threshold(1.0) == pytest.approx(0.4)
