"""Annotation, retrieval and confidence on one embedding, plus CellTypist's own classifier.

Every embedding goes through the same code: exact kNN from query cells to reference cells, the
same ontology-aware vote over the reference's own (mixed-granularity) labels, the same
reference-calibrated unknown threshold. Only the space differs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from benchmarks.eval import knn, metrics
from benchmarks.eval.celltypist_compat import default_celltypist_training
from benchmarks.eval.config import EvalConfig
from benchmarks.eval.datasets import REF_LABEL, STUDY, TRUTH, Split
from benchmarks.eval.metrics import AncestorsFn


@dataclass
class Scores:
    """One method's numbers on one split (NaN where a task does not apply)."""

    method: str
    annotation: dict[str, float] = field(default_factory=dict)
    retrieval: dict[str, float] = field(default_factory=dict)
    confidence: dict[str, float] = field(default_factory=dict)
    query_distance: np.ndarray | None = None
    """per query cell: mean distance to its k nearest reference cells (the histogram)."""
    threshold: float = float("nan")
    seconds: float = 0.0
    note: str = ""


def annotation_scores(
    truth: np.ndarray, pred: list[str] | np.ndarray, ancestors: AncestorsFn
) -> dict[str, float]:
    """Accuracy, macro-F1 and ontology-aware score of predictions against the truth."""
    return {
        "accuracy": metrics.accuracy(truth, pred),
        "macro_f1": metrics.macro_f1(truth, pred),
        "ontology_score": metrics.ontology_score(truth, pred, ancestors),
    }


def cross_study_distances(X: np.ndarray, studies: np.ndarray, k: int) -> np.ndarray:
    """Each reference cell's mean distance to its ``k`` nearest cells of *other* studies.

    A query comes from a study the reference has never seen, so the yardstick for "looks like
    the reference" is how far reference cells sit from the other studies, not from their own
    study-mates (leave-one-out distances are smaller, and flag most new-study cells). With a
    single study there is no other: leave-self-out distances are the fallback.
    """
    names = np.unique(studies)
    if len(names) < 2:
        dist, _ = knn.neighbours(X, X, k, exclude_self=True)
        return dist.mean(axis=1)
    out = np.empty(len(X))
    for name in names:
        own = studies == name
        dist, _ = knn.neighbours(X[~own], X[own], k)
        out[own] = dist.mean(axis=1)
    return out


def score_embedding(
    method: str, X: np.ndarray, split: Split, cfg: EvalConfig, ancestors: AncestorsFn
) -> Scores:
    """kNN annotation, precision@k retrieval and representation confidence on ``X``."""
    started = time.perf_counter()
    ref = split.is_ref
    query_in = split.is_query & ~split.is_absent
    absent = split.is_absent
    ref_X, ref_labels = X[ref], split.obs.loc[ref, REF_LABEL].to_numpy()
    ref_truth = split.obs.loc[ref, TRUTH].to_numpy()
    truth_in = split.obs.loc[query_in, TRUTH].to_numpy()

    k_max = max(cfg.k, *cfg.retrieval_k)
    dist, idx = knn.neighbours(ref_X, X[query_in], k_max)
    pred = knn.vote_all(ref_labels[idx[:, : cfg.k]], ancestors)
    out = Scores(method, annotation=annotation_scores(truth_in, pred, ancestors))
    out.annotation["majority_accuracy"] = metrics.accuracy(
        truth_in, knn.vote_all(ref_labels[idx[:, : cfg.k]], None)
    )
    for k in cfg.retrieval_k:
        out.retrieval[f"precision@{k}"] = metrics.precision_at_k(truth_in, ref_truth[idx[:, :k]])

    # Representation confidence: mean distance to the k nearest reference cells, thresholded
    # at a quantile of the reference's own cross-study distances.
    ref_studies = split.obs.loc[ref, STUDY].to_numpy()
    out.threshold = float(
        np.quantile(cross_study_distances(ref_X, ref_studies, cfg.k), cfg.confidence_quantile)
    )
    d_in = dist[:, : cfg.k].mean(axis=1)
    out.confidence["in_dist_confident"] = float(np.mean(d_in <= out.threshold))
    if absent.any():
        d_abs, _ = knn.neighbours(ref_X, X[absent], cfg.k)
        d_abs = d_abs.mean(axis=1)
        out.confidence["absent_flagged"] = float(np.mean(d_abs > out.threshold))
        out.confidence["auroc"] = metrics.auroc(d_abs, d_in)
        out.query_distance = np.concatenate([d_in, d_abs])
    else:
        out.query_distance = d_in
    out.seconds = time.perf_counter() - started
    return out


def celltypist_scores(split: Split, cfg: EvalConfig, ancestors: AncestorsFn) -> Scores:
    """CellTypist's logistic-regression classifier trained on the reference labels.

    celltypist 1.7.1's default (``LogisticRegression(multi_class="ovr")``) fails on
    scikit-learn >= 1.8; ``celltypist_compat`` refits exactly that model (not its SGD mode).
    """
    import anndata as ad
    import celltypist

    started = time.perf_counter()
    ref, query_in, absent = split.is_ref, split.is_query & ~split.is_absent, split.is_absent
    train = ad.AnnData(split.lognorm[ref])
    train.var_names = list(split.genes)
    labels = split.obs.loc[ref, REF_LABEL].to_numpy()
    # pbmc68k's .raw is log1p CP10k of the full transcriptome cut to 765 genes: rows no longer
    # sum to 10k after expm1, which celltypist's input check rejects; the values are right.
    check = split.counts is not None
    with default_celltypist_training() as shimmed:
        model = celltypist.train(
            train, labels=labels, n_jobs=1, max_iter=200, check_expression=check
        )
    mode = "default logistic regression" + (
        " (one-vs-rest refitted for scikit-learn>=1.8, see celltypist_compat)" if shimmed else ""
    )
    query_mask = split.is_query
    test = ad.AnnData(split.lognorm[query_mask])
    test.var_names = list(split.genes)
    result = celltypist.annotate(test, model=model, mode="best match")
    pred = result.predicted_labels["predicted_labels"].astype(str).to_numpy()
    prob = result.probability_matrix.to_numpy().max(axis=1)
    in_q = query_in[query_mask]
    ab_q = absent[query_mask]
    truth_in = split.obs.loc[query_in, TRUTH].to_numpy()
    out = Scores("celltypist", annotation=annotation_scores(truth_in, pred[in_q], ancestors))
    out.threshold = 0.5  # celltypist's own p_thres for "Unassigned"
    out.confidence["in_dist_confident"] = float(np.mean(prob[in_q] >= out.threshold))
    if ab_q.any():
        out.confidence["absent_flagged"] = float(np.mean(prob[ab_q] < out.threshold))
        out.confidence["auroc"] = metrics.auroc(1 - prob[ab_q], 1 - prob[in_q])
    out.query_distance = 1 - np.concatenate([prob[in_q], prob[ab_q]])
    out.seconds = time.perf_counter() - started
    out.note = f"celltypist {mode}"
    return out
