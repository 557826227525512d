"""Does the simulated atlas have batch effects that matter? A PCA + kNN check.

A classifier of the true cell type, trained on some studies, is scored (a) on held-out cells
of the *same* studies and (b) on cells of *other* studies. Real atlases show (b) clearly
below (a) (batch effects) yet far above chance; the simulator should too. Pure numpy:
log1p(CP10k) -> PCA (SVD of the centred training cells) -> k nearest neighbours (cosine).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import anndata as ad
import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class RealismReport:
    """Accuracies of the kNN classifier; ``chance`` is the majority-class rate of the test set."""

    within_study_accuracy: float
    held_out_study_accuracy: float
    chance_accuracy: float
    n_train: int
    n_within_test: int
    n_held_out_test: int
    train_studies: tuple[str, ...]
    held_out_studies: tuple[str, ...]

    def summary(self) -> str:
        return (
            f"PCA+kNN on true cell type: within-study {self.within_study_accuracy:.3f}, "
            f"held-out studies {self.held_out_study_accuracy:.3f}, "
            f"chance (majority class) {self.chance_accuracy:.3f} "
            f"[train {self.n_train} cells from {len(self.train_studies)} studies, "
            f"held-out {self.n_held_out_test} cells from {len(self.held_out_studies)} studies]"
        )


def _log_cp10k(X: sp.csr_matrix) -> np.ndarray:
    X = sp.csr_matrix(X, dtype=np.float32)
    totals = np.asarray(X.sum(axis=1)).ravel()
    scaled = sp.diags(1e4 / np.maximum(totals, 1.0)) @ X
    logged: np.ndarray = np.log1p(scaled.toarray()).astype(np.float32)
    return logged


def _pca_basis(centred: np.ndarray, n_components: int, rng: np.random.Generator) -> np.ndarray:
    """Top principal axes by randomized subspace iteration (fast, and plenty accurate here)."""
    n_components = min(n_components, *centred.shape)
    q = rng.standard_normal((centred.shape[1], n_components + 10)).astype(np.float32)
    for _ in range(3):
        q, _ = np.linalg.qr(centred.T @ (centred @ q))
    small = centred @ q
    _, _, vt = np.linalg.svd(small, full_matrices=False)
    basis: np.ndarray = (q @ vt.T)[:, :n_components]
    return basis


def _knn_predict(train: np.ndarray, labels: np.ndarray, test: np.ndarray, k: int) -> np.ndarray:
    train = train / np.maximum(np.linalg.norm(train, axis=1, keepdims=True), 1e-12)
    test = test / np.maximum(np.linalg.norm(test, axis=1, keepdims=True), 1e-12)
    codes, uniques = np.unique(labels, return_inverse=True)[1], np.unique(labels)
    out = np.empty(len(test), dtype=np.int64)
    for lo in range(0, len(test), 1024):
        sims = test[lo : lo + 1024] @ train.T
        nearest = np.argpartition(-sims, kth=min(k, sims.shape[1] - 1), axis=1)[:, :k]
        votes = codes[nearest]
        counts = np.zeros((len(votes), len(uniques)), dtype=np.int64)
        np.add.at(counts, (np.arange(len(votes))[:, None], votes), 1)
        out[lo : lo + 1024] = counts.argmax(axis=1)
    return uniques[out]


def batch_effect_check(
    adata: ad.AnnData,
    *,
    held_out_studies: Sequence[str] | None = None,
    label_column: str = "true_cell_type_ontology_term_id",
    study_column: str = "study_id",
    n_components: int = 30,
    k: int = 15,
    within_test_fraction: float = 0.2,
    seed: int = 0,
) -> RealismReport:
    """Train PCA + kNN on some studies; score within those studies and on held-out studies.

    By default the held-out studies are every third study (at least one). Only held-out cells
    whose type occurs in training are scored, so unseen types do not count as batch effects.
    """
    rng = np.random.default_rng(seed)
    studies = np.asarray(adata.obs[study_column].astype(str))
    labels = np.asarray(adata.obs[label_column].astype(str))
    unique_studies = sorted(set(studies))
    if len(unique_studies) < 2:
        msg = f"need at least 2 studies in {study_column!r}, found {len(unique_studies)}"
        raise ValueError(msg)
    held = (
        list(held_out_studies)
        if held_out_studies is not None
        else unique_studies[2::3] or unique_studies[-1:]
    )
    is_held = np.isin(studies, held)
    in_train_studies = np.flatnonzero(~is_held)
    perm = rng.permutation(in_train_studies)
    n_within = int(len(perm) * within_test_fraction)
    within_idx, train_idx = perm[:n_within], perm[n_within:]
    held_idx = np.flatnonzero(is_held & np.isin(labels, labels[train_idx]))

    X = _log_cp10k(adata.X)
    mean = X[train_idx].mean(axis=0)
    basis = _pca_basis(X[train_idx] - mean, n_components, rng)

    def embed(idx: np.ndarray) -> np.ndarray:
        embedded: np.ndarray = (X[idx] - mean) @ basis
        return embedded

    train_emb = embed(train_idx)
    within_pred = _knn_predict(train_emb, labels[train_idx], embed(within_idx), k)
    held_pred = _knn_predict(train_emb, labels[train_idx], embed(held_idx), k)
    held_labels = labels[held_idx]
    _, held_counts = np.unique(held_labels, return_counts=True)
    return RealismReport(
        within_study_accuracy=float(np.mean(within_pred == labels[within_idx])),
        held_out_study_accuracy=float(np.mean(held_pred == held_labels)),
        chance_accuracy=float(held_counts.max() / held_counts.sum()),
        n_train=len(train_idx),
        n_within_test=len(within_idx),
        n_held_out_test=len(held_idx),
        train_studies=tuple(s for s in unique_studies if s not in held),
        held_out_studies=tuple(held),
    )
