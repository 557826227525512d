"""Index builds on a copy in a subprocess: the process keeps answering, nothing is lost."""

from __future__ import annotations

import threading
import time

import numpy as np

from vectorstore import SearchFilter, StoreConfig
from vectorstore.edge import EdgeStore
from vectorstore.offline import BUILDING, PREVIOUS, Gate, recover, sibling

N = 6000


def _fill(store: EdgeStore, dataset: str, n: int, seed: int) -> np.ndarray:
    vec = np.random.default_rng(seed).normal(size=(n, 128)).astype(np.float32)
    payload = [{"study_id": "s", "cell_type_id": "CL:0000236"}]
    store.upsert_grouped(dataset, [f"c{i}" for i in range(n)], vec, payload, np.zeros(n, int))
    return vec


def test_the_build_runs_off_this_process_and_searches_keep_answering(tmp_path):
    config = StoreConfig(hnsw_ef_construct=64, indexing_threshold_kb=100)
    store = EdgeStore(tmp_path / "shard", config)
    try:
        vec = _fill(store, "d", N, 0)
        assert store.info()["indexed_vectors"] == 0
        gaps, errors, done = [], [], threading.Event()

        def searcher() -> None:
            last = time.perf_counter()
            while not done.is_set():
                try:
                    hits = store.search(vec[:2], 5, SearchFilter(must={"study_id": ["s"]}))
                    assert hits[0][0].cell_id == "c0"
                except BaseException as exc:
                    errors.append(exc)
                    return
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        thread = threading.Thread(target=searcher)
        thread.start()
        started = time.perf_counter()
        store.optimize()
        took = time.perf_counter() - started
        done.set()
        thread.join(30)
        assert errors == []
        assert store.info()["indexed_vectors"] == N
        assert store.count() == N
        # searches went on during the build: many of them, none waiting for the whole build
        assert len(gaps) > 20
        assert max(gaps) < max(1.0, took / 2), (max(gaps), took)
        _fill(store, "e", 100, 1)  # writes resume after the swap
        assert store.count() == N + 100
        assert not sibling(store.path, BUILDING).exists()
        assert not sibling(store.path, PREVIOUS).exists()
    finally:
        store.close()


def test_an_interrupted_swap_is_recovered(tmp_path):
    folder = tmp_path / "shard"
    store = EdgeStore(folder)
    _fill(store, "d", 50, 0)
    store.close()
    folder.rename(sibling(folder, PREVIOUS))  # crashed between the two renames
    sibling(folder, BUILDING).mkdir()  # and left a half-built copy
    recover(folder)
    reopened = EdgeStore(folder)
    try:
        assert reopened.count() == 50
        assert not sibling(folder, BUILDING).exists()
    finally:
        reopened.close()


def test_the_gate_lets_readers_share_and_the_swap_wait():
    gate, order = Gate(), []
    with gate.shared(), gate.shared():
        order.append("two readers")
    with gate.exclusive():
        order.append("swap")
    assert order == ["two readers", "swap"]
