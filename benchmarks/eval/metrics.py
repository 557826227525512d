"""The scoring maths, free of models and files so each formula is unit-tested on small arrays.

Why an ontology-aware score: real references label cells at mixed granularity ("T cell" in one
study, "naive CD4 T cell" in the next), so a kNN vote can return a correct but coarser term. Exact
accuracy calls that wrong; the partial-credit score gives it the share of the truth's ancestry it
got right: ``|anc(pred)| / |anc(truth)|`` over reflexive is_a + part_of ancestor sets when
``pred`` is the truth or one of its ancestors, 0 otherwise (a sibling, a descendant, "unknown").
Since ``anc(pred)`` is then a subset of ``anc(truth)`` this is their Jaccard index: 1 for the
exact term, close to 1 for the parent, small for "cell".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

AncestorsFn = Callable[[str], frozenset[str]]
UNKNOWN = "unknown"

BIO_WEIGHT = 0.6
BATCH_WEIGHT = 0.4


def accuracy(truth: Sequence[str], pred: Sequence[str]) -> float:
    """Share of cells whose predicted term is exactly the true term."""
    t, p = _pair(truth, pred)
    return float(np.mean(t == p)) if len(t) else float("nan")


def macro_f1(truth: Sequence[str], pred: Sequence[str]) -> float:
    """Unweighted mean F1 over the *true* classes (predicted-only classes add no row).

    Rare types weigh as much as common ones, which is what a user annotating a rare population
    cares about; a prediction of a class absent from the truth still costs precision nowhere
    but recall of the class it should have been.
    """
    t, p = _pair(truth, pred)
    if not len(t):
        return float("nan")
    scores = []
    for cls in np.unique(t):
        tp = np.sum((t == cls) & (p == cls))
        fp = np.sum((t != cls) & (p == cls))
        fn = np.sum((t == cls) & (p != cls))
        denom = 2 * tp + fp + fn
        scores.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(scores))


def partial_credit(truth: str, pred: str, ancestors: AncestorsFn) -> float:
    """Ontology-aware credit of one prediction (see the module docstring)."""
    if pred == truth:
        return 1.0
    if pred == UNKNOWN or not pred:
        return 0.0
    truth_anc = ancestors(truth)
    if pred not in truth_anc:
        return 0.0
    return len(ancestors(pred)) / len(truth_anc)


def ontology_score(truth: Sequence[str], pred: Sequence[str], ancestors: AncestorsFn) -> float:
    """Mean partial credit over cells (memoised per distinct pair: few pairs, many cells)."""
    t, p = _pair(truth, pred)
    if not len(t):
        return float("nan")
    cache: dict[tuple[str, str], float] = {}
    total = 0.0
    for a, b in zip(t.tolist(), p.tolist(), strict=True):
        key = (a, b)
        if key not in cache:
            cache[key] = partial_credit(a, b, ancestors)
        total += cache[key]
    return total / len(t)


def precision_at_k(query_labels: Sequence[str], neighbour_labels: np.ndarray) -> float:
    """Mean share of each query's ``k`` neighbours that carry the query's label."""
    q = np.asarray(query_labels, dtype=object)
    n = np.asarray(neighbour_labels, dtype=object)
    if n.ndim != 2 or n.shape[0] != len(q):
        msg = f"neighbour_labels must be (n_queries, k) with n_queries={len(q)}, got {n.shape}"
        raise ValueError(msg)
    if not len(q):
        return float("nan")
    return float(np.mean(n == q[:, None]))


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score of a random positive > score of a random negative), ties counting one half.

    Rank-based (Mann-Whitney U), so it needs no threshold and compares confidence scores of
    different methods on their own scales.
    """
    pos = np.asarray(positive, dtype=float)
    neg = np.asarray(negative, dtype=float)
    if not len(pos) or not len(neg):
        return float("nan")
    scores = np.concatenate([pos, neg])
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average ranks over ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def integration_total(bio: float, batch: float) -> float:
    """scib's overall score: 0.6 bio conservation + 0.4 batch correction."""
    return BIO_WEIGHT * bio + BATCH_WEIGHT * batch


def _pair(truth: Sequence[str], pred: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(truth, dtype=object)
    p = np.asarray(pred, dtype=object)
    if t.shape != p.shape:
        msg = f"truth and pred differ in length: {t.shape} vs {p.shape}"
        raise ValueError(msg)
    return t, p
