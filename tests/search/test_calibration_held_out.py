"""The unknown flag's yardstick: the store's cross-study distances or the encoder's held-out."""

from __future__ import annotations

import numpy as np

from cellsearch.search.annotate import Calibration, wider_calibration


def _store_cal(values) -> Calibration:
    return Calibration(np.sort(np.asarray(values, dtype=float)), rep_neighbours=5)


def test_the_wider_yardstick_wins():
    store = _store_cal(np.linspace(0.01, 0.05, 100))
    held_out = {"neighbours": 5, "quantiles": np.linspace(0.02, 0.10, 201).tolist()}
    chosen = wider_calibration(store, held_out, 0.95)
    assert chosen.threshold(0.95) > store.threshold(0.95)
    assert chosen.confidence(0.06) > store.confidence(0.06)
    narrower = {"neighbours": 5, "quantiles": np.linspace(0.001, 0.01, 201).tolist()}
    assert wider_calibration(store, narrower, 0.95) is store


def test_a_model_without_held_out_studies_or_other_neighbours_keeps_the_store_one():
    store = _store_cal([0.01, 0.02, 0.03])
    assert wider_calibration(store, None, 0.95) is store
    other_k = {"neighbours": 10, "quantiles": [0.5, 0.6, 0.7]}
    assert wider_calibration(store, other_k, 0.95) is store
