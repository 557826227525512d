"""Exact neighbours and the label votes every method shares, so methods differ only in space.

Exact (brute-force) search on purpose: an approximate index would mix index recall into a
comparison of representations. Euclidean distance everywhere; cellsearch's unit vectors make it
a monotone function of cosine distance, so rankings match the product's cosine search.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
from sklearn.neighbors import NearestNeighbors

from benchmarks.eval.metrics import AncestorsFn


def neighbours(
    reference: np.ndarray, query: np.ndarray, k: int, *, exclude_self: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """``(distances, indices)`` of the ``k`` nearest reference rows of each query row.

    ``exclude_self`` drops the first hit, for a reference queried against itself.
    """
    extra = 1 if exclude_self else 0
    k_eff = min(k + extra, len(reference))
    index = NearestNeighbors(n_neighbors=k_eff, algorithm="brute").fit(reference)
    dist, idx = index.kneighbors(query)
    return dist[:, extra:], idx[:, extra:]


def majority_vote(labels: Sequence[str]) -> str:
    """Most frequent label; ties go to the label seen first (the nearer neighbour)."""
    counts = Counter(labels)
    best = max(counts.values())
    return next(label for label in labels if counts[label] == best)


def ontology_vote(labels: Sequence[str], ancestors: AncestorsFn, min_support: float = 0.5) -> str:
    """The most specific neighbour label consistent with at least ``min_support`` of them.

    A neighbour labelled "T cell" by a coarse study does not contradict "naive CD4 T cell" from
    a fine one: a candidate's support is the share of neighbours whose label is the candidate,
    an ancestor or a descendant of it. Among candidates with enough support the most specific
    (most ancestors) wins, then the best supported; with none, the plain majority.
    """
    distinct = list(dict.fromkeys(labels))
    anc = {label: ancestors(label) for label in distinct}
    counts = Counter(labels)
    n = len(labels)
    best: tuple[int, float, int, str] | None = None
    for cand in distinct:
        support = sum(c for other, c in counts.items() if other in anc[cand] or cand in anc[other])
        if support / n < min_support:
            continue
        key = (len(anc[cand]), support / n, counts[cand], cand)
        if best is None or key[:3] > best[:3]:
            best = key
    return best[3] if best is not None else majority_vote(labels)


def vote_all(
    neighbour_labels: np.ndarray, ancestors: AncestorsFn | None, min_support: float = 0.5
) -> list[str]:
    """One vote per row of an ``(n, k)`` label array (plain majority when no ontology)."""
    cache: dict[tuple[str, ...], str] = {}
    out = []
    for row in neighbour_labels:
        key = tuple(row.tolist())
        if key not in cache:
            cache[key] = (
                majority_vote(key)
                if ancestors is None
                else ontology_vote(key, ancestors, min_support)
            )
        out.append(cache[key])
    return out
