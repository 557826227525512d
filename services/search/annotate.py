"""Annotate cells by kNN over a labelled reference: a vote, a confidence, and "unknown".

For each query the ``k`` (50) nearest reference cells vote for their ``cell_type_id`` with
weight ``1 / (distance + eps)``; the confidence is the winning label's share of the votes.
When fine labels split (CD4 vs CD8 T cells) and the winner's share is below
``min_confidence``, the votes are pooled up the ontology: if the lowest common ancestor of
the competing labels gathers ``min_confidence`` of the votes, it is reported ("T cell")
instead of a coin toss. Ancestor pooling reads each neighbour's ``cell_type_ancestors``
payload, so it costs no ontology walk beyond the one LCA call.

Separately, the *representation* confidence asks whether the query looks like anything in
the reference at all: its mean distance to its nearest reference cells is compared with
the same statistic for reference cells themselves (leave-one-out), measured once by
:func:`calibrate`. A query farther than nearly all reference cells are from their own
neighbours is flagged ``unknown`` whatever its vote says.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

import ontology
from services.search.errors import EmptyReferenceError, InvalidQueryError
from services.search.filters import Resolver, labels_filter
from services.search.query import fetch_cells
from vectorstore import CellRef, CellStore, Hit, SearchFilter

UNKNOWN = "unknown"

LcaFn = Callable[[Iterable[str]], "str | None"]


@dataclass(frozen=True)
class AnnotationConfig:
    """Knobs of the vote and of the unknown flag."""

    k: int = 50
    #: Added to distances before inverting them, so a near-duplicate cannot take every vote.
    eps: float = 0.01
    #: Below this winning share the competing labels are pooled at their common ancestor.
    min_confidence: float = 0.7
    #: Labels with at least this share compete for the common ancestor.
    split_share: float = 0.15
    #: How many nearest reference cells define a query's distance to the reference.
    rep_neighbours: int = 5
    #: A query farther than this quantile of the reference's own distances is "unknown".
    unknown_quantile: float = 0.99
    safelist: Sequence[str] = ()
    blocklist: Sequence[str] = ()

    def __post_init__(self) -> None:
        if self.k < 1 or self.rep_neighbours < 1 or self.rep_neighbours > self.k:
            msg = f"need 1 <= rep_neighbours ({self.rep_neighbours}) <= k ({self.k})"
            raise InvalidQueryError(msg)
        if not 0.0 < self.unknown_quantile <= 1.0:
            msg = f"unknown_quantile must be in (0, 1], got {self.unknown_quantile}"
            raise InvalidQueryError(msg)


@dataclass(frozen=True)
class Calibration:
    """The reference's leave-one-out distances to its own nearest cells, sorted."""

    distances: np.ndarray
    rep_neighbours: int

    def confidence(self, distance: float) -> float:
        """Share of reference cells at least as far from their neighbours (1: typical)."""
        below = np.searchsorted(self.distances, distance, side="left")
        return float(1.0 - below / len(self.distances))

    def threshold(self, quantile: float) -> float:
        return float(np.quantile(self.distances, quantile))


@dataclass(frozen=True)
class Annotation:
    """One query cell's label and how much to trust it."""

    label: str
    confidence: float
    representation: float
    distance: float
    is_unknown: bool
    via_lca: bool
    best_fine_label: str
    votes: dict[str, float] = field(default_factory=dict)


def _mean_distance(hits: Sequence[Hit], m: int) -> float:
    return float(np.mean([h.distance for h in hits[:m]]))


def reference_filter(
    config: AnnotationConfig,
    base: SearchFilter | None = None,
    *,
    resolve: Resolver | None = None,
) -> SearchFilter | None:
    """The admissible reference: ``base`` (e.g. one model version) plus safelist/blocklist."""
    labels = labels_filter(config.safelist, config.blocklist, resolve=resolve)
    if labels is None:
        return base
    return labels.and_(base)


def calibrate(
    store: CellStore,
    sample: Sequence[CellRef],
    *,
    config: AnnotationConfig | None = None,
    reference: SearchFilter | None = None,
    resolve: Resolver | None = None,
) -> Calibration:
    """Leave-one-out distances of a sample of reference cells to the rest of the reference.

    A few thousand sampled cells suffice: the flag only needs the tail quantile.
    """
    config = config or AnnotationConfig()
    cells = fetch_cells(store, sample)
    flt = reference_filter(config, reference, resolve=resolve)
    mat = np.stack([np.asarray(h.vector) for h in cells])
    results = store.search(mat, config.rep_neighbours + 1, flt)
    dists = []
    for q, hits in zip(cells, results, strict=True):
        others = [h for h in hits if (h.dataset_id, h.cell_id) != (q.dataset_id, q.cell_id)]
        if others:
            dists.append(_mean_distance(others, config.rep_neighbours))
    if not dists:
        msg = "calibration found no reference neighbours: is the reference empty?"
        raise EmptyReferenceError(msg)
    return Calibration(np.sort(np.asarray(dists)), config.rep_neighbours)


def vote(
    hits: Sequence[Hit], config: AnnotationConfig, lca: LcaFn | None = None
) -> tuple[str, float, bool, str, dict[str, float]]:
    """(label, confidence, via_lca, best fine label, shares) from one query's neighbours."""
    weights: dict[str, float] = {}
    ancestors: dict[str, set[str]] = {}
    for h in hits:
        label = str(h.payload.get("cell_type_id", ""))
        if not label:
            continue
        weights[label] = weights.get(label, 0.0) + 1.0 / (max(h.distance, 0.0) + config.eps)
        anc = h.payload.get("cell_type_ancestors") or [label]
        ancestors[label] = {str(a) for a in anc} | {label}
    total = sum(weights.values())
    if total == 0:
        msg = "no labelled reference neighbour (cell_type_id missing in their payloads)"
        raise EmptyReferenceError(msg)
    shares = {lab: w / total for lab, w in sorted(weights.items(), key=lambda kv: -kv[1])}
    best, best_share = next(iter(shares.items()))
    if best_share >= config.min_confidence or len(shares) == 1:
        return best, best_share, False, best, shares
    competing = [lab for lab, s in shares.items() if s >= config.split_share]
    if len(competing) < 2:
        competing = list(shares)[:2]
    common = (lca or ontology.lowest_common_ancestor)(competing)
    if common is None:
        return best, best_share, False, best, shares
    pooled = sum(s for lab, s in shares.items() if common in ancestors[lab])
    if pooled >= config.min_confidence:
        return common, pooled, True, best, shares
    return best, best_share, False, best, shares


def annotate(
    store: CellStore,
    vectors: np.ndarray,
    calibration: Calibration,
    *,
    config: AnnotationConfig | None = None,
    reference: SearchFilter | None = None,
    lca: LcaFn | None = None,
    resolve: Resolver | None = None,
    ef: int | None = None,
) -> list[Annotation]:
    """One :class:`Annotation` per row of ``vectors``."""
    config = config or AnnotationConfig()
    if calibration.rep_neighbours != config.rep_neighbours:
        msg = (
            f"the calibration used {calibration.rep_neighbours} neighbours but the config "
            f"{config.rep_neighbours}; recalibrate with this config"
        )
        raise InvalidQueryError(msg)
    flt = reference_filter(config, reference, resolve=resolve)
    threshold = calibration.threshold(config.unknown_quantile)
    out = []
    for hits in store.search(vectors, config.k, flt, ef=ef):
        if not hits:
            msg = "the reference holds no admissible cell (check the safelist/blocklist)"
            raise EmptyReferenceError(msg)
        label, conf, via_lca, fine, shares = vote(hits, config, lca)
        dist = _mean_distance(hits, config.rep_neighbours)
        unknown = dist > threshold
        out.append(
            Annotation(
                label=UNKNOWN if unknown else label,
                confidence=conf,
                representation=calibration.confidence(dist),
                distance=dist,
                is_unknown=unknown,
                via_lca=via_lca and not unknown,
                best_fine_label=fine,
                votes=shares,
            )
        )
    return out
