"""Annotate cells by kNN over a labelled reference: an ontology-consistent vote, "unknown".

Guarantees (each with the test that holds it, in ``tests/search/test_annotate.py``):

* **Coarse and fine labels that agree support each other.** A neighbour labelled "T cell"
  supports a query's "CD8-positive, alpha-beta T cell" call instead of competing with it:
  the evidence for a term is the vote weight of every neighbour whose label is that term,
  one of its ancestors or one of its descendants (``test_coarse_and_fine_agree_on_the_fine``).
* **The most specific supported term is reported.** Among the terms the neighbours' labels
  and their ancestors span, the deepest one holding at least ``min_confidence`` of the
  evidence wins; its confidence is that share ("share of the neighbours' evidence
  consistent with this label").
* **Never a root-level label.** A common ancestor is reported only at or below a floor of
  informative classes (CELLxGENE's high-level cell types by default); when unrelated types
  split the vote and their common ancestor is above the floor ("eukaryotic cell"), the best
  fine label is reported with its own, low, confidence (``test_unrelated_split_*``).
* **Safelists and blocklists bind the reported label**, not only the voters
  (``test_blocklisted_terms_are_never_reported``).
* **Vectorised.** One batched kNN per request, then numpy over a ``(queries x k)`` matrix of
  label indexes and a precomputed ``(labels x terms)`` compatibility matrix: no Python loop
  over a cell's neighbours.

Separately, the *representation* confidence asks whether a query looks like anything in the
reference at all. Its mean distance to its nearest reference cells is compared with the same
statistic for reference cells measured *across studies* (each sampled reference cell against the
cells of its own type in the other studies, :func:`calibrate`): a new study's cells sit farther
from the reference than reference cells from their own study-mates, so a leave-one-out
calibration would call most of a new study "unknown". A query farther than nearly all
reference cells are from other studies is flagged ``unknown`` whatever its vote says.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import chain
from types import EllipsisType
from typing import Any

import numpy as np

import ontology
from cellsearch.search.errors import EmptyReferenceError, InvalidQueryError
from cellsearch.search.filters import Resolver, labels_filter, resolve_terms
from cellsearch.search.knn import ReferenceIndex
from cellsearch.search.query import DEFAULT_ANNOTATE_K, fetch_cells
from vectorstore import CellRef, CellStore, Hit, SearchFilter

UNKNOWN = "unknown"
#: cell_type_id values that never vote (CELLxGENE's "unknown": a cell without a type).
NON_VOTING = frozenset({"", UNKNOWN})
#: Payload fields read per neighbour when the neighbours are returned.
NEIGHBOUR_FIELDS: tuple[str, ...] = ("cell_type_id", "cell_id", "dataset_id", "study_id")
CALIBRATION_FIELDS: tuple[str, ...] = ("cell_type_id", "study_id")

AncestorsFn = Callable[[str], Iterable[str]]


@lru_cache(maxsize=1)
def default_floor() -> tuple[str, ...]:
    """CELLxGENE's high-level cell types that the Cell Ontology still holds (not obsolete)."""
    onto = ontology.get_ontology("cell_type")
    return tuple(
        t for t in ontology.cellxgene_cell_classes() if t in onto and not onto.is_obsolete(t)
    )


@dataclass(frozen=True)
class AnnotationConfig:
    """Knobs of the vote and of the unknown flag."""

    #: Nearest reference cells fetched per query cell: the candidates the voters are
    #: chosen from (``per_study``, ``max_distance_ratio``).
    k: int = DEFAULT_ANNOTATE_K
    #: Each reference study's nearest ``per_study`` candidates vote (0: every candidate).
    #: One study that labels coarsely ("monocyte"), or holds many cells of a type, can then
    #: not fill a query's neighbourhood and outvote the studies that name its fine type:
    #: docs/annotation.md, "Who votes".
    per_study: int = 3
    #: ...and only those within this ratio of the nearest candidate's distance (in the
    #: Euclidean distance of unit vectors; None: no cut), so a study with nothing like the
    #: query adds no far-away votes.
    max_distance_ratio: float | None = 1.5
    #: Added to distances before inverting them, so a near-duplicate cannot take every vote.
    eps: float = 0.01
    #: A term must hold this share of the evidence consistent with it, and this share of the
    #: specific evidence (its own lineage against contradicting labels), to be reported.
    min_confidence: float = 0.55
    #: ...and at least this share of the votes must name it or one of its subtypes: coarse
    #: labels support a fine call, they cannot make one on their own.
    min_fine_evidence: float = 0.1
    #: The share of the specific evidence a term must hold (None: ``min_confidence``).
    min_specific: float | None = None
    #: How many nearest reference cells define a query's distance to the reference.
    rep_neighbours: int = 5
    #: A query farther than this quantile of the reference's cross-study distances is
    #: "unknown" (its label becomes "unknown"; ``best_fine_label`` keeps the vote's call).
    #: 0.95, the benchmark's threshold (benchmarks/eval): about 95% of known-type cells from a
    #: new study keep their label. Stricter flags cost known cells their label: on the
    #: simulated atlas 0.8 kept 86% confident and flagged 91% of a held-out type, 0.9 98% and
    #: 12% (tests/search/test_annotate_simulated.py); per request: ``unknown_quantile``.
    unknown_quantile: float = 0.95
    #: HNSW ef of the annotation kNN (None: the store's default 1,024) and whether it walks
    #: the float vectors rather than int8 codes. 256 on float vectors keeps recall@50 >= 0.98
    #: on the 100k-cell benchmark reference (benchmarks/bench_annotate.py); int8 codes with
    #: the store's rescoring stay near 0.91 at any ef.
    ef: int | None = 256
    exact_vectors: bool = True
    #: Terms an ancestor fallback may not climb above (None: CELLxGENE's high-level types).
    floor: Sequence[str] | None = None
    safelist: Sequence[str] = ()
    blocklist: Sequence[str] = ()
    #: Vote shares reported per cell (the top few labels).
    top_votes: int = 3
    #: Return each cell's neighbours (ids and distances).
    with_neighbours: bool = False
    #: References up to this many cells get an in-memory HNSW for the kNN
    #: (``cellsearch.search.knn``; 0: always the store's); built in the annotating thread up
    #: to ``index_sync_max_cells`` (~10 s at 100k cells), in the background above it.
    index_max_cells: int = 1_000_000
    index_sync_max_cells: int = 300_000
    #: ef of the in-memory index: recall@50 0.989 at 80 against exact kNN on the 100k
    #: benchmark reference, 12,400 queries/s on 2 cores (0.981 at 64, 0.994 at 96 and
    #: 10,000 queries/s; benchmarks/bench_annotate.py).
    index_ef: int = 80

    def __post_init__(self) -> None:
        if self.k < 1 or self.rep_neighbours < 1 or self.rep_neighbours > self.k:
            msg = f"need 1 <= rep_neighbours ({self.rep_neighbours}) <= k ({self.k})"
            raise InvalidQueryError(msg)
        if not 0.0 < self.unknown_quantile <= 1.0:
            msg = f"unknown_quantile must be in (0, 1], got {self.unknown_quantile}"
            raise InvalidQueryError(msg)
        if self.per_study < 0 or (
            self.max_distance_ratio is not None and self.max_distance_ratio < 1.0
        ):
            msg = (
                f"per_study must be >= 0 and max_distance_ratio >= 1 (or None), got "
                f"{self.per_study} and {self.max_distance_ratio}"
            )
            raise InvalidQueryError(msg)
        if not 0.5 < self.min_confidence <= 1.0:
            # at or below one half two unrelated terms could both pass
            msg = f"min_confidence must be in (0.5, 1], got {self.min_confidence}"
            raise InvalidQueryError(msg)


# ------------------------------------------------------------------------ label space


@dataclass(frozen=True)
class LabelSpace:
    """The reference's labels and the terms a vote over them may report.

    ``terms`` lists the labels first (``terms[:n_labels] == labels``), then the ancestors of
    the labels that the floor and the safelist/blocklist allow. ``related[v, e]`` is 1 when
    label ``v`` is ``terms[e]``, an ancestor or a descendant of it: its votes count for it.
    """

    labels: tuple[str, ...]
    terms: tuple[str, ...]
    related: np.ndarray  # (n_labels, n_terms) float32
    #: ``[v, e]`` is 1 when label ``v`` is ``terms[e]`` or a descendant: evidence *for* e
    below: np.ndarray
    depth: np.ndarray  # (n_terms,) ancestors per term: deeper is more specific
    allowed: np.ndarray  # (n_terms,) bool: may be reported
    #: ``(n_labels, n_labels)`` float32: ``[a, b]`` is 1 when label a is a strict ancestor of b
    coarser: np.ndarray
    index: dict[str, int] = field(repr=False)

    @property
    def n_labels(self) -> int:
        return len(self.labels)

    def codes(self, labels: Sequence[str]) -> np.ndarray:
        """Label index per label string; -1 for labels that do not vote."""
        get = self.index.get
        return np.fromiter((get(lab, -1) for lab in labels), dtype=np.int32, count=len(labels))


def _safe_ancestors(term: str, ancestors: AncestorsFn) -> frozenset[str]:
    try:
        return frozenset(ancestors(term)) | {term}
    except (ontology.OntologyError, ValueError, LookupError):
        return frozenset({term})  # a label the ontology does not know is its own only term


def label_space(
    labels: Iterable[str],
    *,
    floor: Sequence[str] | None = None,
    safelist: Sequence[str] = (),
    blocklist: Sequence[str] = (),
    ancestors: AncestorsFn | None = None,
    resolve: Resolver | None = None,
) -> LabelSpace:
    """Precompute what the vote needs for these reference labels (once per reference).

    A term may be reported when it is at or below a floor term, or when it is a reference
    label itself that is not above the floor (a label the floor does not classify, like
    "endothelial cell", is still a fine label). Ancestors above the floor ("cell",
    "eukaryotic cell") and ancestors beside it ("somatic cell") are never reported.
    """
    anc_fn = ancestors or ontology.ancestors
    labs = tuple(sorted({str(lab) for lab in labels} - NON_VOTING))
    floor_set = frozenset(default_floor() if floor is None else floor)
    above_floor: set[str] = set()
    for f in floor_set:
        above_floor |= _safe_ancestors(f, anc_fn) - {f}
    closures = {lab: _safe_ancestors(lab, anc_fn) for lab in labs}
    extra = sorted(set().union(*closures.values()) - set(labs)) if labs else []
    extra_closures = {t: _safe_ancestors(t, anc_fn) for t in extra}
    closures.update(extra_closures)
    under = {t: bool(closures[t] & floor_set) for t in (*labs, *extra)}
    keep_extra = [t for t in extra if under[t]]
    terms = (*labs, *keep_extra)
    allowed = np.array(
        [under[t] or (i < len(labs) and t not in above_floor) for i, t in enumerate(terms)],
        dtype=bool,
    )
    safe = set(resolve_terms(safelist, "cell_type", "safelist", resolve)) if safelist else set()
    block = set(resolve_terms(blocklist, "cell_type", "blocklist", resolve)) if blocklist else set()
    if safe:
        allowed &= np.array([t in safe for t in terms], dtype=bool)
    if block:
        allowed &= np.array([t not in block for t in terms], dtype=bool)
    related = np.zeros((len(labs), len(terms)), dtype=np.float32)
    below = np.zeros((len(labs), len(terms)), dtype=np.float32)
    for v, lab in enumerate(labs):
        for e, term in enumerate(terms):
            if term in closures[lab]:
                below[v, e] = related[v, e] = 1.0
            elif lab in closures[term]:
                related[v, e] = 1.0
    depth = np.array([len(closures[t]) for t in terms], dtype=np.float64)
    coarser = np.array(
        [[float(a != b and a in closures[b]) for b in labs] for a in labs], dtype=np.float32
    ).reshape(len(labs), len(labs))
    return LabelSpace(
        labels=labs,
        terms=terms,
        related=related,
        below=below,
        depth=depth,
        allowed=allowed,
        coarser=coarser,
        index={lab: i for i, lab in enumerate(labs)},
    )


class PointLabels:
    """Label and study codes of reference points by id, read from the store once and cached.

    The annotation kNN reads no payload (``CellStore.search_ids``): a payload read per
    neighbour cost more than the search. A batch's distinct neighbours are far fewer than
    its ``n x k`` neighbours, and the same reference cells recur batch after batch, so each
    point's label and study are read once. Bounded: past ``max_points`` the cache starts
    over (study codes stay: they are only compared within one batch).
    """

    def __init__(self, store: CellStore, space: LabelSpace, *, max_points: int = 5_000_000):
        self.store = store
        self.space = space
        self.max_points = max_points
        self._codes: dict[object, tuple[int, int]] = {}
        self._studies: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._codes)

    def codes(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``ids``' label codes and study codes (each the shape of ``ids``); -1 for padding,
        and label -1 for non-voting labels."""
        flat = ids.ravel()
        missing = [
            x for x in dict.fromkeys(flat.tolist()) if x is not None and x not in self._codes
        ]
        if missing:
            if len(self._codes) + len(missing) > self.max_points:
                self._codes = {}
            read = self.store.payload_values(missing, ("cell_type_id", "study_id"))
            index, study_of = self.space.index, self._studies
            for pid, lab, study in zip(
                missing, read["cell_type_id"], read["study_id"], strict=True
            ):
                code = study_of.setdefault(study, len(study_of))
                self._codes[pid] = (index.get(lab, -1), code)
        get, pad = self._codes.get, (-1, -1)
        pairs = np.fromiter(
            chain.from_iterable(pad if x is None else get(x, pad) for x in flat),
            dtype=np.int32,
            count=2 * len(flat),
        ).reshape(-1, 2)
        return pairs[:, 0].reshape(ids.shape), pairs[:, 1].reshape(ids.shape)


# ------------------------------------------------------------------------ the vote


@dataclass
class Votes:
    """The vote of a batch of queries, one entry per query (arrays over queries)."""

    term: np.ndarray  # index into LabelSpace.terms; -1 when no neighbour had a label
    confidence: np.ndarray  # share of the evidence consistent with the reported term
    fine: np.ndarray  # the best supported reference label (index into labels)
    fine_share: np.ndarray
    competing: np.ndarray  # best label unrelated to the reported term; -1 if none
    competing_share: np.ndarray
    via_ancestor: np.ndarray  # the reported term is no neighbour's own label
    top_labels: np.ndarray  # (n, top) label indexes by own vote share; -1 pads
    top_shares: np.ndarray  # (n, top)
    n_labels: np.ndarray  # distinct labels among the neighbours


def vote(
    codes: np.ndarray,
    distances: np.ndarray,
    space: LabelSpace,
    config: AnnotationConfig,
) -> Votes:
    """The ontology-consistent vote over a ``(queries x k)`` matrix of neighbour labels.

    ``codes[i, j]`` is the label index of query ``i``'s ``j``-th neighbour (-1: no vote),
    ``distances[i, j]`` its cosine distance. Weights are ``1 / (distance + eps)``.
    """
    codes = np.asarray(codes, dtype=np.int64)
    n, _ = codes.shape
    n_lab = space.n_labels
    valid = codes >= 0
    weights = np.where(valid, 1.0 / (np.maximum(distances, 0.0) + config.eps), 0.0)
    rows = np.broadcast_to(np.arange(n)[:, None], codes.shape)
    own = np.bincount(
        (rows[valid] * max(n_lab, 1) + codes[valid]).ravel(),
        weights=weights[valid].ravel(),
        minlength=n * max(n_lab, 1),
    ).reshape(n, max(n_lab, 1))[:, :n_lab]
    total = own.sum(axis=1)
    has = total > 0
    safe_total = np.where(has, total, 1.0)
    own_share = own / safe_total[:, None]
    share = (own @ space.related.astype(np.float64)) / safe_total[:, None]  # (n, terms)
    lineage = (own @ space.below.astype(np.float64)) / safe_total[:, None]  # for it, below it
    contra = 1.0 - share  # labels neither above nor below the term
    specific = lineage / np.maximum(lineage + contra, 1e-12)

    # the deepest allowed term whose lineage is named by enough votes and that holds enough
    # of the consistent and of the specific evidence (two unrelated terms cannot both hold
    # more than half of the specific evidence); ties in depth: more support
    tau = config.min_confidence - 1e-9
    passing = (
        (share >= tau)
        & (specific >= (config.min_specific or config.min_confidence) - 1e-9)
        & (lineage >= config.min_fine_evidence - 1e-9)
        & space.allowed[None, :]
    )
    score = np.where(passing, space.depth[None, :] + share * 0.5, -np.inf)
    best = np.argmax(score, axis=1)
    found = passing[np.arange(n), best] & has

    # the best fine label: the most supported of the neighbours' finest labels (those no
    # other neighbour's label refines), allowed ones only
    present = own > 0
    refined = (present.astype(np.float32) @ space.coarser.T) > 0  # a finer label is present
    label_ok = present & ~refined & space.allowed[None, :n_lab]
    fine_key = np.where(label_ok, share[:, :n_lab] + space.depth[None, :n_lab] * 1e-7, -np.inf)
    fine = np.argmax(fine_key, axis=1) if n_lab else np.zeros(n, dtype=np.int64)
    fine_ok = label_ok[np.arange(n), fine] if n_lab else np.zeros(n, dtype=bool)
    fine_share = np.where(fine_ok, share[np.arange(n), fine] if n_lab else 0.0, 0.0)

    term = np.where(found, best, np.where(fine_ok, fine, -1))
    confidence = np.where(term >= 0, share[np.arange(n), np.maximum(term, 0)], 0.0)

    # the strongest label that contradicts the reported term (neither its ancestor nor
    # its descendant): what the call was weighed against
    rel_to_term = space.related[:, np.maximum(term, 0)].T > 0  # (n, labels)
    comp_key = np.where((own > 0) & ~rel_to_term, share[:, :n_lab], -np.inf)
    competing = np.argmax(comp_key, axis=1) if n_lab else np.zeros(n, dtype=np.int64)
    comp_ok = np.isfinite(comp_key[np.arange(n), competing]) if n_lab else np.zeros(n, bool)
    competing_share = np.where(comp_ok, comp_key[np.arange(n), competing] if n_lab else 0, 0.0)

    # an ancestor call: the reported term is no neighbour's own label
    named = np.zeros(n, dtype=bool)
    is_label = (term >= 0) & (term < n_lab)
    named[is_label] = own[np.flatnonzero(is_label), term[is_label]] > 0
    top = min(config.top_votes, n_lab)
    if top:
        order = np.argsort(-own_share, axis=1, kind="stable")[:, :top]
        top_shares = np.take_along_axis(own_share, order, axis=1)
        top_labels = np.where(top_shares > 0, order, -1)
    else:
        top_labels = np.full((n, 0), -1, dtype=np.int64)
        top_shares = np.zeros((n, 0))
    return Votes(
        term=term,
        confidence=confidence,
        fine=np.where(fine_ok, fine, -1),
        fine_share=fine_share,
        competing=np.where(comp_ok, competing, -1),
        competing_share=competing_share,
        via_ancestor=found & ~named,
        top_labels=top_labels,
        top_shares=top_shares,
        n_labels=(own > 0).sum(axis=1),
    )


# ------------------------------------------------------------------------ calibration


@dataclass(frozen=True)
class Calibration:
    """Reference cells' mean distances to their nearest reference cells of other studies."""

    distances: np.ndarray
    rep_neighbours: int
    #: False when the reference holds one study only (then leave-one-out distances).
    cross_study: bool = True

    def confidence(self, distance: float | np.ndarray) -> np.ndarray | float:
        """Share of reference cells at least as far from the reference (1: typical)."""
        below = np.searchsorted(self.distances, distance, side="left")
        out = 1.0 - below / len(self.distances)
        return float(out) if np.ndim(out) == 0 else out

    def threshold(self, quantile: float) -> float:
        return float(np.quantile(self.distances, quantile))

    @classmethod
    def from_held_out(cls, held_out: Mapping[str, Any]) -> Calibration:
        """The encoder's own yardstick: distances of studies it was never trained on.

        ``cellsearch train`` records, for the held-out studies that picked its best epoch,
        quantiles of each cell's mean distance to its nearest training cells
        (``training["held_out_distances"]``). Reference cells sit closer to each other than
        any new study will, since the encoder learned to pull exactly those studies together.
        """
        return cls(
            np.sort(np.asarray(held_out["quantiles"], dtype=np.float64)),
            int(held_out["neighbours"]),
        )


def wider_calibration(
    store_cal: Calibration, held_out: Mapping[str, Any] | None, quantile: float
) -> Calibration:
    """The store's cross-study calibration or the model's held-out one, whichever flags less.

    A cell flagged "unknown" loses its label, so when the two disagree the one with the
    larger threshold at ``quantile`` wins (the store may hold another reference than the one
    the encoder was trained on).
    """
    if not held_out or int(held_out.get("neighbours", -1)) != store_cal.rep_neighbours:
        return store_cal
    model = Calibration.from_held_out(held_out)
    return model if model.threshold(quantile) > store_cal.threshold(quantile) else store_cal


def reference_filter(
    config: AnnotationConfig,
    base: SearchFilter | None = None,
    *,
    resolve: Resolver | None = None,
    store: CellStore | None = None,
) -> SearchFilter | None:
    """The admissible reference: ``base`` (e.g. one model version) plus safelist/blocklist,
    and never a cell without a type (CELLxGENE's ``unknown``): those are searchable, not voters.

    With ``store``, the ``unknown`` exclusion is added only when the reference holds such
    cells: a ``must_not`` condition makes Qdrant check every visited node's payload, which
    cost a 100k-cell reference 4x in throughput for a condition that excluded nothing.
    """
    labels = labels_filter(config.safelist, config.blocklist, resolve=resolve)
    flt = labels.and_(base) if labels is not None else base
    if store is not None:
        try:
            untyped = SearchFilter(must={"cell_type_id": [UNKNOWN]}).and_(flt)
        except ValueError:  # a safelist already keeps every untyped cell out
            return flt
        if store.count(untyped) == 0:
            return flt
    return SearchFilter(must_not={"cell_type_id": [UNKNOWN]}).and_(flt)


def calibrate(
    store: CellStore,
    sample: Sequence[CellRef],
    *,
    config: AnnotationConfig | None = None,
    reference: SearchFilter | None = None,
    resolve: Resolver | None = None,
    space: LabelSpace | None = None,
    candidates: int = 200,
) -> Calibration:
    """Cross-study distances of a sample of reference cells to their own type elsewhere.

    For each sampled cell: the mean distance to its ``rep_neighbours`` nearest reference
    cells of its label's lineage (the label and its subtypes) in *other* studies: the
    distance a known cell type from a new study meets. One batched search of ``candidates``
    neighbours finds them for most cells; the few without enough such cells among their
    candidates get a filtered search per (study, label). Cells of a type no other study
    holds are left out (their distance to other types says nothing about novelty). When
    fewer than a tenth of the sample has a match (one study), leave-one-out distances within
    the reference are used instead (``cross_study=False``). A few thousand sampled cells
    suffice: the flag only needs the tail quantile.
    """
    config = config or AnnotationConfig()
    cells = fetch_cells(store, sample)
    flt = reference_filter(config, reference, resolve=resolve, store=store)
    if space is None:
        space = label_space(store.facet("cell_type_id", flt, limit=100_000), floor=config.floor)
    mat = np.stack([np.asarray(h.vector, dtype=np.float32) for h in cells])
    studies = np.array([str(h.payload.get("study_id", "")) for h in cells], dtype=object)
    labels = [str(h.payload.get("cell_type_id", "")) for h in cells]
    codes = space.codes(labels)
    m = config.rep_neighbours
    kc = max(candidates, m)
    results = store.search(mat, kc, flt, ef=max(config.ef or kc, kc), fields=CALIBRATION_FIELDS)
    nb_codes, nb_dists, _ = _hit_matrices(results, kc, space)
    nb_study = np.full(nb_codes.shape, "", dtype=object)
    for i, hits in enumerate(results):
        nb_study[i, : len(hits)] = [str(h.payload.get("study_id", "")) for h in hits]
    # a neighbour counts when it is of another study and of the cell's lineage
    lineage = space.below[np.maximum(nb_codes, 0), np.maximum(codes, 0)[:, None]] > 0
    ok = (nb_codes >= 0) & (codes[:, None] >= 0) & lineage & (nb_study != studies[:, None])
    ok &= studies[:, None] != ""
    take = ok & (np.cumsum(ok, axis=1) <= m)
    found = take.sum(axis=1) == m
    dist = np.where(found, np.where(take, nb_dists, 0.0).sum(axis=1) / m, np.nan)
    # the rest: a filtered search among their lineage in the other studies
    rest = np.flatnonzero(~found & (codes >= 0) & (studies != ""))
    groups: dict[tuple[str, str], list[int]] = {}
    for i in rest.tolist():
        groups.setdefault((str(studies[i]), labels[i]), []).append(i)
    for (study, label), idx in sorted(groups.items()):
        others = SearchFilter(
            must={"cell_type_ancestors": [label]}, must_not={"study_id": [study]}
        ).and_(flt)
        hits_of = store.search(mat[idx], m, others, ef=config.ef, fields=("study_id",))
        for i, hits in zip(idx, hits_of, strict=True):
            if len(hits) == m:
                dist[i] = float(np.mean([h.distance for h in hits]))
    dists = dist[np.isfinite(dist)]
    if len(dists) >= max(1, len(cells) // 10):
        return Calibration(np.sort(dists), m, cross_study=True)
    # one study (or nearly): leave-one-out within the reference
    loo: list[float] = []
    for q, hits in zip(cells, store.search(mat, m + 1, flt, ef=config.ef), strict=True):
        own = (q.dataset_id, q.cell_id)
        kept = [h.distance for h in hits if (h.dataset_id, h.cell_id) != own][:m]
        if kept:
            loo.append(float(np.mean(kept)))
    if not loo:
        msg = "calibration found no reference neighbours: is the reference empty?"
        raise EmptyReferenceError(msg)
    return Calibration(np.sort(np.asarray(loo)), m, cross_study=False)


# ------------------------------------------------------------------------ annotate


@dataclass
class Annotations:
    """Annotations of a batch of queries, column by column (one entry per query)."""

    label: list[str]
    confidence: np.ndarray
    representation: np.ndarray
    distance: np.ndarray  # mean distance to the rep_neighbours nearest
    nearest_distance: np.ndarray
    margin: np.ndarray  # confidence minus the competing label's share
    is_unknown: np.ndarray
    via_ancestor: np.ndarray
    best_fine_label: list[str]
    competing_label: list[str]
    competing_share: np.ndarray
    top_labels: list[list[str]]
    top_shares: list[list[float]]
    neighbours: list[list[Hit]] | None = None

    def __len__(self) -> int:
        return len(self.label)

    def votes(self, i: int) -> dict[str, float]:
        """The top labels of query ``i`` and their own vote shares."""
        return dict(zip(self.top_labels[i], self.top_shares[i], strict=True))


def _hit_matrices(
    results: list[list[Hit]], k: int, space: LabelSpace
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(n, k)`` label codes, distances and study codes (-1, inf, -1 pad) of a kNN."""
    n = len(results)
    lengths = np.fromiter((len(r) for r in results), dtype=np.int64, count=n)
    flat = [h for hits in results for h in hits]
    codes_flat = space.codes([str(h.payload.get("cell_type_id", "")) for h in flat])
    _, study_flat = np.unique(
        np.array([str(h.payload.get("study_id", "")) for h in flat], dtype=object),
        return_inverse=True,
    )
    dist_flat = np.fromiter((h.distance for h in flat), dtype=np.float64, count=len(flat))
    codes = np.full((n, k), -1, dtype=np.int32)
    studies = np.full((n, k), -1, dtype=np.int32)
    dists = np.full((n, k), np.inf)
    rows = np.repeat(np.arange(n), lengths)
    cols = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    codes[rows, cols] = codes_flat
    studies[rows, cols] = study_flat
    dists[rows, cols] = dist_flat
    return codes, dists, studies


def voting_codes(
    codes: np.ndarray, dists: np.ndarray, studies: np.ndarray, config: AnnotationConfig
) -> np.ndarray:
    """``codes`` with -1 for the candidates that do not vote: past their study's first
    ``per_study`` (candidates come nearest first), or farther than ``max_distance_ratio``
    times the nearest candidate (cosine distance ``d`` of unit vectors is ``e^2 / 2`` in
    their Euclidean distance ``e``, so the ratio applies squared)."""
    out = np.array(codes, dtype=np.int32, copy=True)
    n, k = out.shape
    if config.max_distance_ratio is not None and k:
        nearest = np.maximum(dists[:, :1], 0.0)
        out[dists > config.max_distance_ratio**2 * nearest + 1e-9] = -1
    if config.per_study and k:
        order = np.argsort(studies, axis=1, kind="stable")  # nearest first within a study
        grouped = np.take_along_axis(studies, order, axis=1)
        pos = np.broadcast_to(np.arange(k), (n, k))
        starts = np.ones((n, k), dtype=bool)
        starts[:, 1:] = grouped[:, 1:] != grouped[:, :-1]
        first = np.maximum.accumulate(np.where(starts, pos, 0), axis=1)
        rank = np.empty((n, k), dtype=np.int64)
        np.put_along_axis(rank, order, pos - first, axis=1)
        out[rank >= config.per_study] = -1
    return out


def annotate(
    store: CellStore,
    vectors: np.ndarray,
    calibration: Calibration,
    *,
    config: AnnotationConfig | None = None,
    reference: SearchFilter | None = None,
    resolve: Resolver | None = None,
    space: LabelSpace | None = None,
    labels: PointLabels | None = None,
    index: ReferenceIndex | None = None,
    voters: SearchFilter | EllipsisType | None = ...,
) -> Annotations:
    """Annotate every row of ``vectors`` in one batched kNN and one vectorised vote.

    ``space`` is the reference's :class:`LabelSpace` and ``labels`` its
    :class:`PointLabels` (built here when not given; the service caches both per reference).
    ``index``: the reference's in-memory HNSW (``knn.ReferenceIndex``), used for the kNN
    when given; else the store's. ``voters``: the reference's :func:`reference_filter`, when
    the caller has it (computing it asks the store a count).
    """
    config = config or AnnotationConfig()
    if calibration.rep_neighbours != config.rep_neighbours:
        msg = (
            f"the calibration used {calibration.rep_neighbours} neighbours but the config "
            f"{config.rep_neighbours}; recalibrate with this config"
        )
        raise InvalidQueryError(msg)
    flt = (
        reference_filter(config, reference, resolve=resolve, store=store)
        if isinstance(voters, EllipsisType)
        else voters
    )
    if space is None:
        space = label_space(
            store.facet("cell_type_id", flt, limit=100_000),
            floor=config.floor,
            safelist=config.safelist,
            blocklist=config.blocklist,
            resolve=resolve,
        )
    results: list[list[Hit]] | None = None
    if config.with_neighbours:  # hits with ids: the payload path
        results = store.search(vectors, config.k, flt, ef=config.ef, fields=NEIGHBOUR_FIELDS)
        codes, dists, studies = _hit_matrices(results, config.k, space)
        empty = np.array([not hits for hits in results])
    elif index is not None:
        found = index.search(vectors, config.k)
        codes, dists, studies = found.codes, found.distances, found.studies
        empty = np.isinf(dists[:, 0])
    else:
        ids, dists32 = store.search_ids(
            vectors, config.k, flt, ef=config.ef, exact_vectors=config.exact_vectors
        )
        codes, studies = (labels or PointLabels(store, space)).codes(ids)
        dists = dists32.astype(np.float64)
        empty = np.isinf(dists[:, 0])
    if empty.any():
        msg = "the reference holds no admissible cell (check the safelist/blocklist)"
        raise EmptyReferenceError(msg)
    v = vote(voting_codes(codes, dists, studies, config), dists, space, config)
    if np.any(v.term < 0):
        msg = "no labelled reference neighbour (cell_type_id missing in their payloads)"
        raise EmptyReferenceError(msg)
    m = config.rep_neighbours
    near = np.where(np.isfinite(dists[:, :m]), dists[:, :m], np.nan)
    mean_dist = np.nanmean(near, axis=1)
    unknown = mean_dist > calibration.threshold(config.unknown_quantile)
    terms = np.asarray(space.terms, dtype=object)
    label_table = np.asarray(space.labels, dtype=object)

    def names(idx: np.ndarray, table: np.ndarray) -> list[str]:
        return [str(x) for x in np.where(idx >= 0, table[np.maximum(idx, 0)], "").tolist()]

    top = [[str(label_table[j]) for j in row if j >= 0] for row in v.top_labels.tolist()]
    shares = [
        [float(s) for s, j in zip(srow, lrow, strict=True) if j >= 0]
        for srow, lrow in zip(v.top_shares.tolist(), v.top_labels.tolist(), strict=True)
    ]
    reported = names(v.term, terms)
    return Annotations(
        label=[UNKNOWN if u else lab for lab, u in zip(reported, unknown.tolist(), strict=True)],
        confidence=v.confidence,
        representation=np.asarray(calibration.confidence(mean_dist), dtype=np.float64),
        distance=mean_dist,
        nearest_distance=dists[:, 0],
        margin=v.confidence - v.competing_share,
        is_unknown=unknown,
        via_ancestor=v.via_ancestor & ~unknown,
        best_fine_label=names(v.fine, label_table),
        competing_label=names(v.competing, label_table),
        competing_share=v.competing_share,
        top_labels=top,
        top_shares=shares,
        neighbours=results,
    )
