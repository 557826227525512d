"""Our own store types: ids, validation, filter semantics."""

from __future__ import annotations

import numpy as np
import pytest

from vectorstore import CellRecord, SearchFilter, StoreConfig, point_id


def test_point_id_is_deterministic_and_distinguishes_datasets():
    assert point_id("d1", "c1") == point_id("d1", "c1")
    assert point_id("d1", "c1") != point_id("d2", "c1")
    assert point_id("a", "bc") != point_id("ab", "c")


def test_point_id_rejects_empty_parts():
    with pytest.raises(ValueError, match="non-empty"):
        point_id("", "c1")


def test_cell_record_checks_vector():
    with pytest.raises(ValueError, match="128-d"):
        CellRecord("d", "c", np.ones(64, dtype=np.float32), {})
    with pytest.raises(ValueError, match="zero or not finite"):
        CellRecord("d", "c", np.zeros(128, dtype=np.float32), {})
    rec = CellRecord("d", "c", np.ones(128, dtype=np.float64), {"study_id": "s"})
    assert rec.vector.dtype == np.float32
    assert rec.full_payload()["cell_id"] == "c"


def test_cell_record_refuses_contradicting_payload():
    with pytest.raises(ValueError, match="disagrees"):
        CellRecord("d", "c", np.ones(128), {"dataset_id": "other"})


def test_filter_rejects_unknown_field_and_empty_must():
    with pytest.raises(ValueError, match="unknown payload field 'celltype'"):
        SearchFilter(must={"celltype": ["x"]})
    with pytest.raises(ValueError, match="match no cell"):
        SearchFilter(must={"study_id": []})
    assert SearchFilter(must_not={"study_id": []}).is_empty


def test_filter_matches_list_fields_by_any_element():
    flt = SearchFilter(
        must={"cell_type_ancestors": ["T"]}, must_not={"study_id": "s2"}
    )  # a bare string is one value
    assert flt.must_not == {"study_id": ("s2",)}
    assert flt.matches({"cell_type_ancestors": ["CD4", "T"], "study_id": "s1"})
    assert not flt.matches({"cell_type_ancestors": ["B"], "study_id": "s1"})
    assert not flt.matches({"cell_type_ancestors": ["T"], "study_id": "s2"})


def test_filter_and_intersects_must_values():
    a = SearchFilter(must={"study_id": ["s1", "s2"]})
    both = a.and_(SearchFilter(must={"study_id": ["s2", "s3"]}, must_not={"donor_id": ["x"]}))
    assert both.must == {"study_id": ("s2",)}
    assert both.must_not == {"donor_id": ("x",)}
    with pytest.raises(ValueError, match="disjoint"):
        a.and_(SearchFilter(must={"study_id": ["s9"]}))


def test_store_config_validates():
    with pytest.raises(ValueError, match="not supported"):
        StoreConfig(distance="dot")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown fields"):
        StoreConfig(hnsw_payload_fields=("nope",))
