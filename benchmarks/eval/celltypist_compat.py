"""Run CellTypist's *default* classifier on scikit-learn >= 1.8.

celltypist 1.7.1 builds ``LogisticRegression(multi_class="ovr", ...)``; scikit-learn 1.8 removed
``multi_class``, so its default training raises TypeError. Its SGD mode still runs but is a
different, much weaker model on our data (query accuracy 0.13 vs 0.70 on a smoke split), so
falling back to it would misrepresent CellTypist. Instead this shim fits exactly what
``multi_class="ovr"`` meant: one binary logistic regression per class, stacked into ``coef_`` and
``intercept_``, so celltypist's ``decision_function`` + sigmoid scoring and its gene ranking work
unchanged. With ``scikit-learn<1.8`` installed the shim is not used.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression


class OvRLogisticRegression(LogisticRegression):
    """``LogisticRegression`` fitted one-vs-rest, as ``multi_class="ovr"`` did before 1.8."""

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> OvRLogisticRegression:
        y = np.asarray(y)
        classes = np.unique(y)
        if len(classes) <= 2:
            return super().fit(X, y, sample_weight=sample_weight)
        params = self.get_params()
        coefs, intercepts, n_iter = [], [], []
        for cls in classes:
            binary = LogisticRegression(**params).fit(X, y == cls, sample_weight=sample_weight)
            coefs.append(binary.coef_[0])
            intercepts.append(binary.intercept_[0])
            n_iter.append(int(np.max(binary.n_iter_)))
        self.classes_ = classes
        self.coef_ = np.vstack(coefs)
        self.intercept_ = np.asarray(intercepts)
        self.n_iter_ = np.asarray(n_iter)
        self.n_features_in_ = self.coef_.shape[1]
        return self


def ovr_logistic_regression(*, multi_class: str = "ovr", **kwargs: Any) -> LogisticRegression:
    """What celltypist calls ``LogisticRegression(...)``: one-vs-rest unless told otherwise."""
    cls = OvRLogisticRegression if multi_class == "ovr" else LogisticRegression
    return cls(**kwargs)


def needs_shim() -> bool:
    """True when this scikit-learn rejects ``multi_class`` (celltypist's default then fails)."""
    try:
        LogisticRegression(multi_class="ovr")  # type: ignore[call-arg]
    except TypeError:
        return True
    return False


@contextlib.contextmanager
def default_celltypist_training() -> Iterator[bool]:
    """Within the block celltypist trains its default model; yields whether the shim is on."""
    module = importlib.import_module("celltypist.train")
    if not needs_shim():
        yield False
        return
    original = module.LogisticRegression
    module.LogisticRegression = ovr_logistic_regression
    try:
        yield True
    finally:
        module.LogisticRegression = original
