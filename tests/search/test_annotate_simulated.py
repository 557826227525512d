"""Annotation on the simulated atlas: unseen studies, mixed-granularity labels, a held-out type.

The reference is some studies of ``celldata.simulate``'s atlas, embedded by the default
encoder; the query is the other studies. Measured here: the new vote beats the old one on
the query's true types, nothing is labelled above the floor, and the cross-study calibration
keeps known types confident while the distance score ranks the held-out type as farther.
"""

from __future__ import annotations

import numpy as np
import pytest

import ontology
from cellsearch.search.annotate import default_floor
from cellsearch.search.engine import Annotator
from vectorstore import CellRecord, open_store

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # loads the default encoder

HELD_OUT = "CL:0000236"  # B cell: in the query, absent from the reference


def _auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    import encoder
    from celldata.simulate import simulate_atlas

    atlas = simulate_atlas(6000, 10, seed=2)
    z = encoder.load_default().embed(atlas)
    obs = atlas.obs.astype(str)
    studies = sorted(set(obs["study_id"]))
    in_query = obs["study_id"].isin(studies[-3:]).to_numpy()
    true = obs["true_cell_type_ontology_term_id"].to_numpy()
    records = []
    for i in np.flatnonzero(~in_query & (true != HELD_OUT)):
        label = obs["cell_type_ontology_term_id"].iloc[i]
        payload = {
            "study_id": obs["study_id"].iloc[i],
            "cell_type_id": label,
            "cell_type_ancestors": sorted(ontology.ancestors(label)),
        }
        records.append(CellRecord("ref", obs.index[i], z[i], payload))
    store = open_store(path=tmp_path_factory.mktemp("sim-store"))
    store.upsert(records)
    yield store, z[in_query], true[in_query]
    store.close()


def test_known_types_stay_confident_and_the_held_out_type_is_farther(split):
    store, queries, true = split
    ann = Annotator().annotate(store, queries, 50, None)
    known = true != HELD_OUT
    assert (~known).sum() > 20
    assert 1 - ann.is_unknown[known].mean() >= 0.8  # the goal for known types
    auroc = _auroc(ann.distance[~known], ann.distance[known])
    assert auroc > 0.75, auroc
    above = set()
    for f in default_floor():
        above |= set(ontology.ancestors(f, include_self=False))
    assert not set(ann.label) & above
    # a stricter threshold flags most of the type the reference lacks, keeping 80% of the rest
    strict = Annotator().annotate(store, queries, 50, None, unknown_quantile=0.8)
    assert strict.is_unknown[~known].mean() >= 0.5
    assert 1 - strict.is_unknown[known].mean() >= 0.8


def test_the_in_memory_index_finds_the_exact_neighbours_and_the_same_labels(split, monkeypatch):
    """The annotation index (FAISS HNSW, even on this small reference) against exact kNN
    and against the store's kNN."""
    from dataclasses import replace

    from cellsearch.search import knn
    from cellsearch.search.knn import ReferenceIndex

    monkeypatch.setattr(knn, "EXACT_MAX_CELLS", 0)
    store, queries, _ = split
    ids, vectors, _ = store.scan(None, ["cell_type_id"])
    assert len(ids) == store.count() and vectors.shape == (len(ids), 128)
    index = ReferenceIndex(ids, vectors, np.arange(len(ids)), ef=80)
    found = index.search(queries, 50)
    unit = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    exact = np.argsort(-(unit @ vectors.T), axis=1)[:, :50]
    recall = np.mean([len(set(a) & set(b)) / 50 for a, b in zip(found.codes, exact, strict=True)])
    assert recall >= 0.98, recall
    assert np.all(np.diff(found.distances, axis=1) >= -1e-6)  # nearest first

    with_index = Annotator()
    without = Annotator(replace(with_index.config, index_max_cells=0))
    a = with_index.annotate(store, queries, 50, None)
    b = without.annotate(store, queries, 50, None)
    assert with_index.wait_for_index() and not without.wait_for_index()
    assert np.mean(np.array(a.label) == np.array(b.label)) >= 0.98


def test_a_large_reference_is_indexed_in_the_background(split):
    """Above ``index_sync_max_cells`` annotation answers at once through the store's kNN and
    switches to the index when it is built."""
    from dataclasses import replace

    store, queries, _ = split
    annotator = Annotator(replace(Annotator().config, index_sync_max_cells=10))
    first = annotator.annotate(store, queries[:50], 50, None)
    assert annotator.wait_for_index(timeout_s=120)
    second = annotator.annotate(store, queries[:50], 50, None)
    assert np.mean(np.array(first.label) == np.array(second.label)) >= 0.95


class _CountingStore:
    """The real store, with its ``count`` calls tallied (a filtered count scans the store)."""

    def __init__(self, store):
        self._store, self.counts = store, 0

    def count(self, filter=None):
        self.counts += 1
        return self._store.count(filter)

    def __getattr__(self, name):
        return getattr(self._store, name)


def test_a_session_resolves_the_reference_once_per_job(split):
    """A streamed job's batches share one resolved reference: the store is counted for the
    job, not for each batch, and a job without a session still sees the store's current size."""
    store, queries, _ = split
    counting = _CountingStore(store)
    annotator = Annotator()
    annotator.annotate(counting, queries[:10], 50, None)  # builds the reference

    def counts_for(batches: int) -> int:
        counting.counts, session = 0, {}
        for start in range(0, 50 * batches, 50):
            annotator.annotate(counting, queries[start : start + 50], 50, None, session=session)
            annotator.parameters(counting, 50, None, session=session)
        return counting.counts

    one = counts_for(1)
    assert 0 < one == counts_for(4)
    counting.counts = 0
    for start in range(0, 200, 50):
        annotator.annotate(counting, queries[start : start + 50], 50, None)
    assert counting.counts == 4 * one  # no session: every call resolves afresh
