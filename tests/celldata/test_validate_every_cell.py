"""Every cell is validated, not a sample: a defect at a row no sample window reads fails with
its own code (it used to be stored, or to end as ``internal``)."""

from __future__ import annotations

import numpy as np
import pytest

from celldata.errors import (
    CountTooLargeError,
    DataValidationError,
    EmptyCellIdError,
    NegativeCountsError,
    NonFiniteCountsError,
    NonIntegerCountsError,
    UnknownTermError,
)
from celldata.validate import validate_dataset

HUMAN_GENES = ["CD3E", "CD14", "LYZ", "MS4A1", "NKG7", "GNLY", "CD8A", "IL7R", "FCGR3A", "PPBP"]
N = 5000
#: A row no quick sample reads (windows 0-499, 1500-1999, ... and 0-199, 1249-1448, ...).
ROW = 2200


def _counts() -> np.ndarray:
    return np.random.default_rng(1).poisson(2.0, (N, len(HUMAN_GENES))).astype(np.float32) + 1


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (2.5, NonIntegerCountsError),
        (-3.0, NegativeCountsError),
        (np.nan, NonFiniteCountsError),
        (np.inf, NonFiniteCountsError),
        (1e30, CountTooLargeError),
    ],
)
def test_a_bad_value_at_an_unsampled_row_fails_with_its_code(write_h5ad, value, error):
    X = _counts()
    X[ROW, 4] = value
    with pytest.raises(error) as err:
        validate_dataset(write_h5ad(X), vocabulary=HUMAN_GENES, chunk_size=1024)
    assert err.value.code == error.code
    assert "cells 2048-3071" in str(err.value)  # the chunk holding the row is named


def test_an_empty_cell_id_fails(write_h5ad, make_obs):
    obs = make_obs(N)
    obs.index = [("" if i == ROW else f"cell{i}") for i in range(N)]
    with pytest.raises(EmptyCellIdError, match=f"first at row {ROW}"):
        validate_dataset(write_h5ad(_counts(), obs=obs), vocabulary=HUMAN_GENES)


@pytest.mark.parametrize("assay", ["EFO:9999999", "10x v3", "CL:0000236"])
def test_an_invalid_assay_term_fails(write_h5ad, make_obs, assay):
    obs = make_obs(40)
    obs["assay_ontology_term_id"] = ["EFO:0009922"] * 39 + [assay]
    with pytest.raises(UnknownTermError, match="assay_ontology_term_id") as err:
        validate_dataset(write_h5ad(_counts()[:40], obs=obs), vocabulary=HUMAN_GENES)
    assert err.value.code == "unknown_term"


def test_a_known_assay_passes(write_h5ad, make_obs):
    obs = make_obs(40)
    obs["assay_ontology_term_id"] = ["EFO:0009922"] * 40
    report = validate_dataset(write_h5ad(_counts()[:40], obs=obs), vocabulary=HUMAN_GENES)
    assert report.terms["assay_ontology_term_id"] == ["EFO:0009922"]


def test_every_code_is_distinct():
    classes = [
        NonIntegerCountsError,
        NegativeCountsError,
        NonFiniteCountsError,
        CountTooLargeError,
        EmptyCellIdError,
    ]
    codes = {c.code for c in classes}
    assert len(codes) == len(classes)
    assert all(issubclass(c, DataValidationError) for c in classes)
