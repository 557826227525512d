"""Annotation: the ontology-consistent vote on constructed neighbour sets, and end to end on a
constructed reference in the embedded store (cross-study calibration, unknown flag, lists)."""

from __future__ import annotations

import numpy as np
import pytest
from search_atlas import B_CELL, CD4, CD8, CENTRES, MONOCYTE, NK, NOISE, sample_cells

import ontology
from cellsearch.search.annotate import (
    UNKNOWN,
    AnnotationConfig,
    Calibration,
    annotate,
    calibrate,
    default_floor,
    label_space,
    vote,
    voting_codes,
)
from cellsearch.search.errors import InvalidQueryError
from vectorstore import CellRecord, SearchFilter, open_store

pytestmark = pytest.mark.integration

T_CELL = "CL:0000084"
ENDOTHELIAL, FIBROBLAST = "CL:0000115", "CL:0000057"
MATURE_AB_T = "CL:0000791"  # mature alpha-beta T cell: the common ancestor of CD4 and CD8
LYMPHOCYTE = "CL:0000542"
ABOVE_FLOOR = {"CL:0000000", "CL:0000255"}  # cell, eukaryotic cell
VOCAB = (T_CELL, CD4, CD8, B_CELL, NK, MONOCYTE, ENDOTHELIAL, FIBROBLAST, UNKNOWN)


def _vote(labels, distances=None, *, space=None, config=None):
    """The vote of one query whose neighbours carry ``labels``."""
    space = space or label_space(VOCAB)
    codes = space.codes(list(labels))[None, :]
    dist = np.full(codes.shape, 0.1) if distances is None else np.asarray(distances)[None, :]
    v = vote(codes, dist, space, config or AnnotationConfig())
    term = space.terms[v.term[0]] if v.term[0] >= 0 else None
    return term, float(v.confidence[0]), v, space


# ------------------------------------------------------------------- the vote alone


def test_coarse_and_fine_agree_on_the_fine():
    # 6 neighbours say "T cell", 4 say "CD8 T cell": they never disagree, so CD8 wins with
    # all the evidence (the old vote said "T cell" at 0.6)
    term, conf, v, _ = _vote([T_CELL] * 6 + [CD8] * 4)
    assert (term, conf) == (CD8, pytest.approx(1.0))
    assert not v.via_ancestor[0] and v.competing[0] == -1


def test_a_fine_split_reports_the_finest_label_with_its_consistent_share():
    term, conf, v, space = _vote([T_CELL] * 5 + [CD8] * 4 + [CD4] * 1)
    assert (term, conf) == (CD8, pytest.approx(0.9))  # T cell and CD8 are consistent
    assert space.labels[v.competing[0]] == CD4
    assert float(v.competing_share[0]) == pytest.approx(0.6)  # CD4 + the T cell votes
    # 3 CD8 against 2 CD4 holds 60% of the informative votes: a CD8 call at the default
    # min_confidence (0.55), no clear fine call at a stricter one, where their common
    # ancestor is reported
    term, conf, *_ = _vote([T_CELL] * 5 + [CD8] * 3 + [CD4] * 2)
    assert (term, conf) == (CD8, pytest.approx(0.8))
    strict = AnnotationConfig(min_confidence=0.7)
    term, conf, *_ = _vote([T_CELL] * 5 + [CD8] * 3 + [CD4] * 2, config=strict)
    assert (term, conf) == (MATURE_AB_T, pytest.approx(1.0))
    # 6 against 5 is no clear call at the default either
    term, conf, *_ = _vote([CD8] * 6 + [CD4] * 5)
    assert (term, conf) == (MATURE_AB_T, pytest.approx(1.0))


def test_each_study_votes_with_its_nearest_few_and_far_candidates_do_not():
    # a study labelling coarsely holds the query's 6 nearest candidates ("T cell"), a study
    # labelling finely the next 3 (CD8): each keeps its 3 nearest, so the fine study is heard
    # as loudly as the coarse one
    space = label_space(VOCAB)
    labels = [T_CELL] * 6 + [CD8] * 3 + [B_CELL]
    codes = space.codes(labels)[None, :]
    studies = np.array([[0] * 6 + [1] * 3 + [2]])
    dists = np.array([[0.10] * 6 + [0.12] * 3 + [0.9]])
    cfg = AnnotationConfig(k=10)
    kept = voting_codes(codes, dists, studies, cfg)
    assert (kept[0] >= 0).tolist() == [True] * 3 + [False] * 3 + [True] * 3 + [False]
    # the B cell is its study's nearest, but 3x farther than the nearest candidate
    term, conf, *_ = _vote([space.labels[c] for c in kept[0] if c >= 0])
    assert (term, conf) == (CD8, pytest.approx(1.0))
    everyone = AnnotationConfig(k=10, per_study=0, max_distance_ratio=None)
    assert (voting_codes(codes, dists, studies, everyone) == codes).all()
    with pytest.raises(InvalidQueryError, match="per_study"):
        AnnotationConfig(per_study=-1)


def test_two_fine_labels_under_one_coarse_one_fall_back_to_their_ancestor():
    # 30 T cell, 10 CD8, 10 CD4: each fine label has 0.8 consistent evidence, but neither
    # wins the specific evidence, so the call is their common ancestor
    term, conf, *_ = _vote([T_CELL] * 30 + [CD8] * 10 + [CD4] * 10)
    assert (term, conf) == (MATURE_AB_T, pytest.approx(1.0))
    term, conf, *_ = _vote([T_CELL] * 30 + [CD8] * 16 + [CD4] * 4)
    assert (term, conf) == (CD8, pytest.approx(0.92))


def test_coarse_labels_alone_never_make_a_fine_call():
    # "macrophage" neighbours only: the reference also holds "alveolar macrophage", but
    # nobody near this cell says so
    space = label_space((*VOCAB, "CL:0000235", "CL:0000583"))
    term, conf, *_ = _vote(["CL:0000235"] * 10, space=space)
    assert (term, conf) == ("CL:0000235", pytest.approx(1.0))
    term, *_ = _vote([T_CELL] * 49 + [CD8], space=space)  # one CD8 vote in fifty
    assert term == T_CELL


def test_siblings_split_falls_back_to_their_common_ancestor():
    term, conf, v, _ = _vote([CD4] * 5 + [CD8] * 5)
    assert term == ontology.lowest_common_ancestor([CD4, CD8]) == MATURE_AB_T
    assert conf == pytest.approx(1.0) and v.via_ancestor[0]


def test_unrelated_split_stays_under_the_floor():
    # B cell vs NK cell: their common ancestor "lymphocyte" is under hematopoietic cell
    term, _, v, _ = _vote([B_CELL] * 5 + [NK] * 5)
    assert term == LYMPHOCYTE and v.via_ancestor[0]
    assert set(ontology.ancestors(term)) & set(default_floor())


def test_unrelated_split_above_the_floor_keeps_the_best_fine_label_at_low_confidence():
    # the case: endothelial 0.40 / fibroblast 0.39 / T cell 0.19 used to be
    # "eukaryotic cell" at confidence 1.00
    labels = [ENDOTHELIAL] * 40 + [FIBROBLAST] * 39 + [T_CELL] * 19 + [CD8] * 2
    term, conf, v, space = _vote(labels)
    assert term == ENDOTHELIAL
    assert conf == pytest.approx(0.40)
    assert not v.via_ancestor[0]
    assert space.labels[v.competing[0]] == FIBROBLAST


def test_no_reported_term_is_ever_above_the_floor():
    space = label_space(VOCAB)
    above = set()
    for f in default_floor():
        above |= set(ontology.ancestors(f, include_self=False))
    rng = np.random.default_rng(0)
    codes = rng.integers(-1, space.n_labels, size=(2000, 30)).astype(np.int32)
    dists = rng.uniform(0.0, 0.5, size=codes.shape)
    v = vote(codes, dists, space, AnnotationConfig())
    reported = {space.terms[t] for t in v.term[v.term >= 0]}
    assert reported and not reported & above
    assert above >= ABOVE_FLOOR


def test_blocklisted_terms_are_never_reported():
    # blocking the common ancestors: a B/NK split must fall back to a fine label, never to
    # "lymphocyte" (nor to anything else blocked)
    blocked = [LYMPHOCYTE, "CL:0000738", "CL:0000842", "CL:0000988", "CL:0000219"]
    space = label_space(VOCAB, blocklist=blocked)
    term, conf, v, _ = _vote([B_CELL] * 5 + [NK] * 4, space=space)
    assert term == B_CELL and conf == pytest.approx(5 / 9)
    rng = np.random.default_rng(1)
    codes = rng.integers(0, space.n_labels, size=(500, 20)).astype(np.int32)
    v = vote(codes, np.full(codes.shape, 0.1), space, AnnotationConfig())
    assert not {space.terms[t] for t in v.term} & set(blocked)


def test_a_safelist_binds_the_reported_label():
    space = label_space(VOCAB, safelist=[B_CELL, NK])
    term, *_ = _vote([B_CELL] * 5 + [NK] * 5, space=space)
    assert term in {B_CELL, NK}  # "lymphocyte" is not on the safelist


def test_unknown_cells_never_vote():
    term, conf, v, _ = _vote([UNKNOWN] * 8 + [NK] * 2)
    assert (term, conf) == (NK, pytest.approx(1.0))
    assert int(v.n_labels[0]) == 1


def test_closer_neighbours_weigh_more():
    term, conf, *_ = _vote([B_CELL] + [NK] * 3, distances=[0.0, 0.5, 0.5, 0.5])
    assert term == B_CELL and conf > 0.8


def test_min_confidence_must_exceed_one_half():
    with pytest.raises(InvalidQueryError, match="min_confidence"):
        AnnotationConfig(min_confidence=0.5)


# ------------------------------------------------------------------- against a store


@pytest.fixture(scope="module")
def calibration(store, atlas):
    sample = [(r.dataset_id, r.cell_id) for r in atlas[::2]]
    return calibrate(store, sample)


def test_calibration_is_cross_study(store, atlas, calibration):
    assert calibration.cross_study
    assert len(calibration.distances) == 120
    assert np.all(np.diff(calibration.distances) >= 0)
    # other studies are farther than a cell's own neighbours in general
    loo = []
    for rec in atlas[::2]:
        (hits,) = store.search(rec.vector, 6)
        kept = [h.distance for h in hits if h.cell_id != rec.cell_id][:5]
        loo.append(np.mean(kept))
    assert np.median(calibration.distances) >= np.median(loo)
    assert calibration.confidence(0.0) == 1.0
    assert calibration.confidence(10.0) == 0.0


def test_cells_of_a_known_type_get_it_with_high_confidence(store, calibration):
    strict = AnnotationConfig(unknown_quantile=0.99)  # flag outliers only
    for ct, seed in ((CD4, 1), (B_CELL, 2), (NK, 3)):
        out = annotate(store, sample_cells(ct, 5, seed=seed), calibration, config=strict)
        assert out.label == [ct] * 5
        assert np.all(out.confidence > 0.8) and not out.is_unknown.any()
        # the default (0.8 quantile) flags about a fifth of typical cells at most
        assert annotate(store, sample_cells(ct, 5, seed=seed), calibration).is_unknown.sum() <= 2
        assert np.mean(out.representation) > 0.2
        assert np.all(out.nearest_distance <= out.distance)
        assert all(out.top_labels[i][0] == ct for i in range(5))


def test_a_held_out_type_is_flagged_unknown(store, calibration):
    out = annotate(store, sample_cells(MONOCYTE, 5, seed=4), calibration)
    assert out.label == [UNKNOWN] * 5 and out.is_unknown.all()
    assert np.all(out.representation < 0.01)
    assert set(out.best_fine_label) <= {CD4, CD8, B_CELL, NK}


def test_a_cell_between_cd4_and_cd8_is_never_a_confident_fine_call(store, calibration):
    """Between two sibling types a query gets their common ancestor, or the side a small
    majority of its neighbours took at a confidence that says how split they were; a
    stricter ``min_confidence`` turns those into the ancestor."""
    rng = np.random.default_rng(5)
    mid = (CENTRES[CD4] + CENTRES[CD8]) / 2
    queries = mid + 0.2 * NOISE * rng.normal(size=(5, 128))
    out = annotate(store, queries, calibration)
    for i in range(5):
        assert not out.is_unknown[i]
        if out.via_ancestor[i]:
            assert out.label[i] == MATURE_AB_T and out.confidence[i] == pytest.approx(1.0)
        else:
            assert out.label[i] in {CD4, CD8}
            assert AnnotationConfig().min_confidence <= out.confidence[i] < 0.8
    strict = annotate(store, queries, calibration, config=AnnotationConfig(min_confidence=0.8))
    assert strict.via_ancestor.all() and set(strict.label) == {MATURE_AB_T}


def test_blocklist_and_safelist_restrict_voters_and_label(store, atlas):
    sample = [(r.dataset_id, r.cell_id) for r in atlas[::3]]
    cfg = AnnotationConfig(blocklist=["CD4-positive, alpha-beta T cell"])
    out = annotate(
        store, sample_cells(CD4, 3, seed=6), calibrate(store, sample, config=cfg), config=cfg
    )
    assert all(CD4 not in out.votes(i) for i in range(3))
    assert set(out.best_fine_label) == {CD8}
    assert set(out.label) <= {CD8, UNKNOWN}  # CD4 is absent from this reference
    safe = AnnotationConfig(safelist=[B_CELL, NK])
    out = annotate(
        store, sample_cells(CD4, 3, seed=6), calibrate(store, sample, config=safe), config=safe
    )
    assert set(out.label) <= {B_CELL, NK, UNKNOWN}
    assert all(set(out.votes(i)) <= {B_CELL, NK} for i in range(3))


def test_neighbours_come_back_when_asked(store, calibration):
    out = annotate(
        store,
        sample_cells(NK, 2, seed=8),
        calibration,
        config=AnnotationConfig(with_neighbours=True),
    )
    assert out.neighbours is not None and len(out.neighbours[0]) == AnnotationConfig().k
    dists = [h.distance for h in out.neighbours[0]]
    assert dists == sorted(dists) and dists[0] == pytest.approx(out.nearest_distance[0])


def test_calibration_must_match_the_config(store, calibration):
    with pytest.raises(InvalidQueryError, match="recalibrate"):
        annotate(
            store,
            sample_cells(CD4, 1, seed=1),
            calibration,
            config=AnnotationConfig(rep_neighbours=3),
        )


def test_calibration_confidence_is_the_upper_tail_share():
    cal = Calibration(np.array([0.1, 0.2, 0.3, 0.4]), 5)
    assert cal.confidence(0.25) == 0.5
    assert cal.threshold(1.0) == pytest.approx(0.4)


def test_a_single_study_reference_calibrates_leave_one_out(tmp_path):
    rng = np.random.default_rng(9)
    vecs = CENTRES[NK] + NOISE * rng.normal(size=(30, 128))
    payload = {"study_id": "only", "cell_type_id": NK, "cell_type_ancestors": [NK]}
    with open_store(path=tmp_path / "s") as s:
        s.upsert(
            [CellRecord("d", f"c{i}", v.astype(np.float32), payload) for i, v in enumerate(vecs)]
        )
        cal = calibrate(s, [("d", f"c{i}") for i in range(10)])
        assert not cal.cross_study and len(cal.distances) == 10
        assert s.count(SearchFilter(must={"cell_type_id": [NK]})) == 30


def test_untyped_reference_cells_are_never_neighbours_of_the_vote(tmp_path):
    rng = np.random.default_rng(10)
    typed = CENTRES[NK] + NOISE * rng.normal(size=(40, 128))
    untyped = CENTRES[B_CELL] + NOISE * rng.normal(size=(40, 128))
    records = [
        CellRecord(
            "d",
            f"nk{i}",
            v.astype(np.float32),
            {"study_id": f"s{i % 2}", "cell_type_id": NK, "cell_type_ancestors": [NK]},
        )
        for i, v in enumerate(typed)
    ] + [
        CellRecord(
            "d",
            f"u{i}",
            v.astype(np.float32),
            {"study_id": f"s{i % 2}", "cell_type_id": UNKNOWN, "cell_type_ancestors": []},
        )
        for i, v in enumerate(untyped)
    ]
    with open_store(path=tmp_path / "s") as s:
        s.upsert(records)
        cfg = AnnotationConfig(k=20, with_neighbours=True)
        cal = calibrate(s, [("d", f"nk{i}") for i in range(20)], config=cfg)
        out = annotate(s, sample_cells(B_CELL, 3, seed=11), cal, config=cfg)
        assert out.neighbours is not None
        assert all(h.cell_id.startswith("nk") for row in out.neighbours for h in row)
        assert set(out.best_fine_label) == {NK}
        plain = annotate(s, sample_cells(B_CELL, 3, seed=11), cal, config=AnnotationConfig(k=20))
        assert set(plain.best_fine_label) == {NK}
