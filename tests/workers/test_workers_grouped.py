"""The fast write path stores exactly what the per-record path stores.

Bulk ingestion groups a chunk's payloads (one per sample x cell type) and writes them with
``EdgeStore.upsert_grouped``; the result must be indistinguishable from one
``CellRecord`` per cell through ``upsert``: same ids, same payloads, same vectors, and the
same refusals.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from workers_testkit import make_obs

from cellsearch.ingest.pipeline import PayloadBuilder, write_chunk
from cellsearch.platform.jobs import MemoryJobStore
from vectorstore import SearchFilter, open_store

N = 40


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = open_store(path=tmp_path_factory.mktemp("grouped"))
    yield s
    s.close()


def _obs(n: int = N) -> pd.DataFrame:
    return make_obs(n, width=4)


def _vectors(n: int = N, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, 128)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _builder(dataset_id: str) -> PayloadBuilder:
    job = MemoryJobStore().create(path="/x.h5ad", study_id="S1", dataset_id=dataset_id, metadata={})
    return PayloadBuilder(job, model_version="m1", ancestors=lambda t: [t, f"{t}-parent"])


def test_groups_are_one_per_sample_and_cell_type() -> None:
    found = _builder("G0").groups(_obs())
    assert len(found.payloads) == 12  # 4 samples (2 donors) x 3 cell types
    for i, (cell, g) in enumerate(zip(found.cell_ids, found.group, strict=True)):
        payload = found.payloads[g]
        assert cell == f"c{i:04d}"
        assert payload["sample_id"] == f"s{i % 4}"
        assert payload["cell_type_ancestors"] == sorted(
            [payload["cell_type_id"], f"{payload['cell_type_id']}-parent"]
        )
        assert payload["study_id"] == "S1"
        assert payload["model_version"] == "m1"


def test_grouped_write_equals_per_record_write(store) -> None:
    obs, vectors = _obs(), _vectors()
    grouped = _builder("G1").groups(obs)
    write_chunk(store, "G1", grouped, vectors)
    store.upsert(_builder("G2").records(obs, vectors))
    assert store.count(SearchFilter(must={"dataset_id": ["G1"]})) == N
    assert store.count(SearchFilter(must={"dataset_id": ["G2"]})) == N
    cells = list(obs.index)
    one = store.retrieve([("G1", c) for c in cells])
    two = store.retrieve([("G2", c) for c in cells])
    for a, b in zip(one, two, strict=True):
        assert {**a.payload, "dataset_id": "G2"} == b.payload
        np.testing.assert_allclose(a.vector, b.vector, atol=1e-6)
    t_cells = SearchFilter(must={"dataset_id": ["G1"], "cell_type_ancestors": ["CL:0000624"]})
    assert store.count(t_cells) == len(range(1, N, 3))


def test_grouped_write_is_idempotent_and_last_wins(store) -> None:
    obs, vectors = _obs(), _vectors()
    found = _builder("G3").groups(obs)
    store.upsert_grouped("G3", list(found.cell_ids), vectors, found.payloads, found.group)
    twice = np.concatenate([vectors[:1], _vectors(1, seed=7)])
    store.upsert_grouped("G3", ["c0000", "c0000"], twice, found.payloads, found.group[:2])
    assert store.count(SearchFilter(must={"dataset_id": ["G3"]})) == N
    hit = store.retrieve([("G3", "c0000")])[0]
    np.testing.assert_allclose(hit.vector, _vectors(1, seed=7)[0], atol=1e-6)
    assert hit.payload["cell_type_id"] == found.payloads[found.group[1]]["cell_type_id"]


def test_grouped_write_refuses_bad_vectors_and_a_foreign_dataset(store) -> None:
    found = _builder("G4").groups(_obs(2))
    zero = np.zeros((2, 128), dtype=np.float32)
    with pytest.raises(ValueError, match=r"c0000.*zero or not finite"):
        store.upsert_grouped("G4", list(found.cell_ids), zero, found.payloads, found.group)
    with pytest.raises(ValueError, match="disagrees"):
        store.upsert_grouped(
            "G4", list(found.cell_ids), _vectors(2), [{"dataset_id": "other"}], np.zeros(2, int)
        )
    assert store.count(SearchFilter(must={"dataset_id": ["G4"]})) == 0
