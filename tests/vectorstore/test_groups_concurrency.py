"""The payload-group table and the embedded store under concurrent searches, writes and deletes.

Before the table had a lock, filtered searches failed with IndexError while a dataset was
deleted (the rows were renumbered under them) and a delete failed with BufferError (an
``array`` resized while numpy read it). These tests run those operations from threads at
once and require zero errors and exact results afterwards.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from vectorstore import CellRecord, SearchFilter, StoreConfig
from vectorstore.edge import EdgeStore
from vectorstore.groups import PayloadGroups, ids_contain


def _hammer(workers: list[Callable[[], None]], seconds: float) -> list[BaseException]:
    """Run each worker in a loop on its own thread for ``seconds``; the errors raised."""
    errors: list[BaseException] = []
    stop = threading.Event()

    def loop(fn: Callable[[], None]) -> None:
        while not stop.is_set():
            try:
                fn()
            except BaseException as exc:
                errors.append(exc)
                return

    threads = [threading.Thread(target=loop, args=(fn,), daemon=True) for fn in workers]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(30)
    return errors


def _payload(dataset: str, i: int) -> dict:
    return {
        "dataset_id": dataset,
        "study_id": f"s{i % 3}",
        "cell_type_id": f"CL:{i % 11:07d}",
        "cell_type_ancestors": [f"CL:{i % 11:07d}", "CL:0000000"],
        "tissue_id": f"UBERON:{i % 5:07d}",
    }


def test_table_reads_and_changes_from_threads(tmp_path):
    groups = PayloadGroups(tmp_path)
    groups.add(_payload("keep", i) for i in range(300))
    flt = SearchFilter(must={"study_id": ["s1"], "tissue_id": ["UBERON:0000002"]})
    expected = set(groups.select(flt).tolist())
    counter = iter(range(10**9))

    def churn() -> None:
        n = next(counter)
        groups.add(_payload(f"tmp{n}", i) for i in range(200))
        groups.remove_dataset(f"tmp{n}")

    def read() -> None:
        found = set(groups.select(flt).tolist())
        assert expected <= found  # the kept dataset's groups are always there
        rows = groups.match_rows(flt)
        groups.contains(rows, np.fromiter(expected, np.int64))
        ids, _share = groups.select_sorted(flt)
        assert ids_contain(ids, np.fromiter(expected, np.int64)).all()

    errors = _hammer([churn, read, read, read], seconds=3.0)
    assert errors == []
    assert set(groups.select(flt).tolist()) == expected
    # the file agrees with memory: a reopened table holds exactly the kept groups
    assert len(PayloadGroups(tmp_path)) == len(groups)


@pytest.mark.slow
@pytest.mark.parametrize("post_filter", [None, 0.01])
def test_store_searches_during_upserts_and_deletes(tmp_path, post_filter, atlas_factory):
    config = StoreConfig(post_filter_min_share=post_filter)
    store = EdgeStore(tmp_path / "shard", config)
    base = atlas_factory(n_per_type=40, seed=1)
    store.upsert(base)
    n_base = store.count()
    rng = np.random.default_rng(0)
    queries = rng.normal(size=(4, 128)).astype(np.float32)
    filters = [
        SearchFilter(must={"study_id": ["study1"], "tissue_id": ["UBERON:0002048"]}),
        SearchFilter(must={"cell_type_ancestors": ["CL:0000084"]}, must_not={"study_id": ["x"]}),
        SearchFilter(must={"disease_id": ["PATO:0000461"]}),
        None,
    ]
    counter = iter(range(10**9))

    def churn() -> None:
        n = next(counter)
        extra = [
            CellRecord(f"extra{n}", r.cell_id, r.vector, {**r.payload, "study_id": f"x{n}"})
            for r in base[:120]
        ]
        store.upsert(extra)
        assert store.delete_dataset(f"extra{n}") == len(extra)

    def search() -> None:
        for flt in filters:
            for hits in store.search(queries, 10, flt):
                assert len(hits) <= 10
                if flt is not None:
                    assert all(flt.matches(h.payload) for h in hits)

    try:
        errors = _hammer([churn, search, search, search, search], seconds=4.0)
        assert errors == []
        assert store.count() == n_base
    finally:
        store.close()
