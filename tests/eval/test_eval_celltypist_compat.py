"""CellTypist's default classifier through the scikit-learn >= 1.8 shim, on a tiny real run."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from benchmarks.eval.celltypist_compat import OvRLogisticRegression, default_celltypist_training


def _toy(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.array(["A", "B", "C"]), 40)
    X = rng.normal(size=(120, 6))
    X[y == "A", 0] += 3
    X[y == "B", 1] += 3
    X[y == "C", 2] += 3
    return X, y


def test_ovr_equals_one_binary_regression_per_class():
    X, y = _toy()
    model = OvRLogisticRegression(C=1.0, max_iter=200).fit(X, y)
    assert model.coef_.shape == (3, 6)
    assert list(model.classes_) == ["A", "B", "C"]
    binary_b = LogisticRegression(C=1.0, max_iter=200).fit(X, y == "B")
    np.testing.assert_allclose(model.coef_[1], binary_b.coef_[0], rtol=1e-6)
    assert (model.predict(X) == y).mean() > 0.95


@pytest.mark.slow
def test_celltypist_default_training_runs_and_classifies():
    ad = pytest.importorskip("anndata")
    celltypist = pytest.importorskip("celltypist")
    import scipy.sparse as sp

    rng = np.random.default_rng(1)
    counts = rng.poisson(1.0, size=(90, 30)).astype(np.float32)
    labels = np.repeat(np.array(["T", "B", "NK"]), 30)
    for i, lab in enumerate(["T", "B", "NK"]):
        counts[labels == lab, i * 5 : i * 5 + 5] += 30
    X = np.log1p(counts / counts.sum(1, keepdims=True) * 1e4)
    adata = ad.AnnData(sp.csr_matrix(X))
    adata.var_names = [f"g{i}" for i in range(30)]
    with default_celltypist_training():
        model = celltypist.train(adata, labels=labels, n_jobs=1, max_iter=100)
    assert model.classifier.coef_.shape == (3, 30)
    pred = celltypist.annotate(adata, model=model, mode="best match").predicted_labels
    assert (pred["predicted_labels"].astype(str).to_numpy() == labels).mean() > 0.95
