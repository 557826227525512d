"""What only the embedded engine has: an HNSW graph built by ``optimize`` and its schema."""

from __future__ import annotations

import numpy as np
import pytest

from vectorstore import SearchFilter, StoreConfig, open_store
from vectorstore.edge import EdgeStore
from vectorstore.groups import GROUP_FIELD

pytestmark = pytest.mark.integration


def test_optimize_builds_hnsw_and_filtered_search_stays_exact(fast_tmp, atlas_factory):
    atlas = atlas_factory(n_per_type=100, seed=5)
    cfg = StoreConfig(
        indexing_threshold_kb=1,  # index even this tiny shard
        full_scan_threshold_kb=1,  # and search it through the graph, not by scanning
        hnsw_payload_fields=("cell_type_ancestors",),
    )
    store = open_store(path=fast_tmp, config=cfg)
    assert isinstance(store, EdgeStore)
    try:
        store.upsert(atlas)
        assert store.info()["indexed_vectors"] == 0
        store.optimize()
        info = store.info()
        assert info["points"] == len(atlas)
        assert info["indexed_vectors"] >= len(atlas)
        flt = SearchFilter(must={"cell_type_ancestors": ["CL:0000084"]})
        keep = [r for r in atlas if flt.matches(r.full_payload())]
        mat = np.stack([r.vector / np.linalg.norm(r.vector) for r in keep])
        for rec in atlas[::50]:
            (hits,) = store.search(rec.vector, k=20, filter=flt, ef=128)
            q = rec.vector / np.linalg.norm(rec.vector)
            exact = {keep[i].cell_id for i in np.argsort(-(mat @ q))[:20]}
            assert len({h.cell_id for h in hits} & exact) >= 19
    finally:
        store.close()


def test_reopened_shard_keeps_its_payload_indexes(fast_tmp, atlas_factory):
    store = open_store(path=fast_tmp)
    store.upsert(atlas_factory(n_per_type=2))
    store.close()
    again = EdgeStore(fast_tmp / "cells")
    try:
        schema = again._shard.info().payload_schema
        assert {"cell_type_ancestors", "study_id", "dataset_id", "model_version"} <= set(schema)
        assert again.count() == 8
    finally:
        again.close()


def test_acorn_search_params_are_accepted_and_exact_on_a_small_shard(fast_tmp, atlas_factory):
    atlas = atlas_factory(n_per_type=10, seed=6)
    store = open_store(path=fast_tmp, config=StoreConfig(acorn_max_selectivity=0.4))
    try:
        store.upsert(atlas)
        flt = SearchFilter(must={"study_id": ["study1"]})
        (hits,) = store.search(atlas[0].vector, k=5, filter=flt)
        keep = [r for r in atlas if flt.matches(r.full_payload())]
        q = atlas[0].vector / np.linalg.norm(atlas[0].vector)
        sims = np.stack([r.vector / np.linalg.norm(r.vector) for r in keep]) @ q
        assert [h.cell_id for h in hits] == [keep[i].cell_id for i in np.argsort(-sims)[:5]]
    finally:
        store.close()


def test_payload_indexes_on_disk_filter_the_same(fast_tmp, atlas_factory):
    atlas = atlas_factory(n_per_type=10, seed=7)
    store = open_store(path=fast_tmp, config=StoreConfig(payload_index_on_disk=True))
    try:
        store.upsert(atlas)
        flt = SearchFilter(must={"cell_type_ancestors": ["CL:0000084"]})
        assert store.count(flt) == sum(flt.matches(r.full_payload()) for r in atlas) == 20
        (hits,) = store.search(atlas[0].vector, k=50, filter=flt)
        assert len(hits) == 20
        assert store.facet("study_id", flt) == {"study0": 8, "study1": 6, "study2": 6}
    finally:
        store.close()


def _index_on_disk(shard_dir) -> dict[str, bool]:
    """What the engine recorded per indexed field in each segment (all segments agree)."""
    import json

    seen: dict[str, bool] = {}
    for cfg in shard_dir.glob("segments/*/payload_index/config.json"):
        for name, params in json.loads(cfg.read_text())["indexed_fields"].items():
            assert seen.setdefault(name, params["on_disk"]) == params["on_disk"]
    return seen


def test_heap_index_fields_stay_on_the_heap_and_filter_the_same(fast_tmp, atlas_factory):
    atlas = atlas_factory(n_per_type=10, seed=7)
    heap = ("cell_type_id", "tissue_id")
    store = open_store(path=fast_tmp, config=StoreConfig(heap_index_fields=heap))
    try:
        store.upsert(atlas)
        on_disk = _index_on_disk(store.path)
        assert on_disk, "no segment recorded its payload indexes"
        assert {f for f, disk in on_disk.items() if not disk} == set(heap)
        assert on_disk[GROUP_FIELD]  # memory-mapped like the keyword indexes
        flt = SearchFilter(
            must={
                "cell_type_id": ["CL:0000624", "CL:0000625"],
                "tissue_ancestors": ["UBERON:0002048"],
            }
        )
        expected = sum(flt.matches(r.full_payload()) for r in atlas)
        assert expected > 0
        assert store.count(flt) == expected
        (hits,) = store.search(atlas[0].vector, k=50, filter=flt)
        assert len(hits) == expected
        assert all(flt.matches(h.payload) for h in hits)
    finally:
        store.close()


def test_heap_index_fields_must_be_known():
    with pytest.raises(ValueError, match="heap_index_fields has unknown fields"):
        StoreConfig(heap_index_fields=("tissue",))
