"""The servicers' one door into the search core: filters, queries, centroid, annotation.

Every call the gRPC layer makes into query planning goes through these few functions,
so the servicers stay decode -> call -> encode and the core can change shape behind them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cellsearch.v1 import cellsearch_pb2 as pb
from services.search.status import NotFoundError, PreconditionError


def build_filter(msg: pb.Filter | None, query_studies: Sequence[str] = ()) -> Any:
    """The store filter for a request's ``Filter`` (None when it constrains nothing)."""
    from services.search.filters import FilterSpec
    from services.search.filters import build_filter as plan_filter

    if msg is None:
        return None
    spec = FilterSpec(
        cell_types=tuple(msg.cell_types),
        tissues=tuple(msg.tissues),
        diseases=tuple(msg.diseases),
        exclude_cell_types=tuple(msg.exclude_cell_types),
        exclude_tissues=tuple(msg.exclude_tissues),
        exclude_diseases=tuple(msg.exclude_diseases),
        studies=tuple(msg.studies),
        exclude_studies=tuple(msg.exclude_studies),
        datasets=tuple(msg.datasets),
        donors=tuple(msg.donors),
        assays=tuple(msg.assays),
        include_descendants=not msg.exact_terms,
        exclude_query_studies=msg.exclude_query_studies,
    )
    return plan_filter(spec, query_studies=tuple(query_studies))


def stored_vectors(store: Any, refs: Sequence[Any]) -> tuple[np.ndarray, list[Any]]:
    """The stored embeddings of referenced cells; every reference must exist."""
    hits = store.retrieve(list(refs), with_vectors=True)
    found = {h.cell_id for h in hits} | {(h.dataset_id, h.cell_id) for h in hits}
    missing = [r for r in refs if r not in found]
    if missing:
        shown = ", ".join(map(str, missing[:5]))
        text = (
            f"{len(missing)} query cell(s) are not in the atlas: {shown}; check the ids "
            "with GetCells or ListDatasets"
        )
        raise NotFoundError(text)
    return np.stack([np.asarray(h.vector, dtype=np.float32) for h in hits]), hits


def search(store: Any, vectors: np.ndarray, k: int, flt: Any, *, with_vectors: bool) -> list:
    return store.search(vectors, k, flt, with_vectors=with_vectors)


def centroid(vectors: np.ndarray) -> tuple[np.ndarray, float]:
    """The unit mean of unit-normalised query vectors and their mean cosine to it."""
    mat = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    mean = mat.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    if norm == 0.0:
        text = "the query cells' embeddings cancel out: their centroid has no direction"
        raise ValueError(text)
    unit = mean / norm
    return unit.astype(np.float32), float((mat @ unit).mean())


def annotate(store: Any, vectors: np.ndarray, k: int, flt: Any) -> list[dict[str, Any]]:
    """One dict per query row: cell_type_id, confidence, representation_confidence, ..."""
    if store.count(flt) == 0:
        text = (
            "the reference is empty (no stored cell passes the filter): ingest labelled "
            "cells first or widen the filter"
        )
        raise PreconditionError(text)
    out = []
    for hits in store.search(vectors, k, flt):
        labels = [str(h.payload.get("cell_type_id", "")) for h in hits]
        weights = np.array([max(h.score, 0.0) for h in hits]) + 1e-9
        votes: dict[str, float] = {}
        for lab, w in zip(labels, weights, strict=True):
            votes[lab] = votes.get(lab, 0.0) + float(w)
        best = max(votes, key=votes.__getitem__)
        conf = votes[best] / float(weights.sum())
        mean_d = float(np.mean([h.distance for h in hits]))
        rep = float(np.clip(1.0 - mean_d / 0.5, 0.0, 1.0))
        out.append(
            {
                "cell_type_id": best if rep > 0.2 else "unknown",
                "confidence": conf,
                "representation_confidence": rep,
                "unknown": rep <= 0.2,
                "fell_back_to_ancestor": False,
                "mean_distance": mean_d,
            }
        )
    return out
