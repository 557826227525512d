"""Answers as a user reads them: hits and annotations as pandas DataFrames, labels resolved.

One definition of every column, shared by the in-process ``Atlas``, the gRPC servicers
(which fill the same fields into protos) and the remote client (which turns those protos
back into these frames), so a notebook gets the same table from either. Light on purpose:
numpy and pandas only (the ontology loads on the first label looked up), so the client-only
install can use it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd

from cellsearch.platform import schema

#: The columns every hits frame starts with; payload fields and labels follow.
HIT_COLUMNS: tuple[str, ...] = ("query", "rank", "cell_id", "dataset_id", "score", "distance")

#: One row per annotated cell: these columns, then ``votes`` (and ``neighbours`` if asked).
ANNOTATION_COLUMNS: tuple[str, ...] = (
    "cell_type_id",
    "cell_type",
    "confidence",
    "representation_confidence",
    "unknown",
    "fell_back_to_ancestor",
    "best_fine_cell_type_id",
    "best_fine_cell_type",
    "competing_cell_type_id",
    "competing_cell_type",
    "competing_share",
    "margin",
    "nearest_distance",
    "mean_distance",
)


class HitLike(Protocol):
    """A stored cell found by a query (``vectorstore.Hit``), read only."""

    @property
    def cell_id(self) -> str: ...
    @property
    def dataset_id(self) -> str: ...
    @property
    def score(self) -> float: ...
    @property
    def distance(self) -> float: ...
    @property
    def payload(self) -> Mapping[str, Any]: ...
    @property
    def vector(self) -> np.ndarray | None: ...


@functools.lru_cache(maxsize=65536)
def term_label(term_id: str) -> str:
    """The ontology label of a term id; the id itself when it has none (never fails)."""
    if not term_id:
        return ""
    import ontology

    try:
        return ontology.label(term_id)
    except (ValueError, LookupError):
        return term_id


def hit_fields(payload: Mapping[str, Any], fields: Sequence[str] = ()) -> dict[str, str]:
    """The requested payload fields as strings (lists joined by ``;``), labels resolved;
    no ``fields``: every scalar field and the readable labels."""
    wanted = list(fields) or [*schema.HIT_FIELDS, *schema.LABEL_FIELDS]
    out: dict[str, str] = {}
    for name in wanted:
        if name in schema.LABEL_FIELDS:
            out[name] = term_label(str(payload.get(schema.LABEL_FIELDS[name], "")))
            continue
        value = payload.get(name)
        if value is None:
            continue
        out[name] = ";".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
    return out


def hit_row(query: str, rank: int, hit: Any, fields: Mapping[str, str]) -> dict[str, Any]:
    """One row of a hits frame (``hit`` has ``cell_id``, ``dataset_id``, ``score``,
    ``distance``; ``fields`` its payload fields as :func:`hit_fields` gives them)."""
    row: dict[str, Any] = {
        "query": query,
        "rank": rank,
        "cell_id": hit.cell_id,
        "dataset_id": hit.dataset_id,
        "score": float(hit.score),
        "distance": float(hit.distance),
    }
    row.update(fields)
    return row


def hits_frame(
    rows: Sequence[Mapping[str, Any]], vectors: Sequence[Any] | None = None
) -> pd.DataFrame:
    """A long frame: one row per (query cell, hit), best hit first within a query."""
    frame = pd.DataFrame(list(rows), columns=None if rows else list(HIT_COLUMNS))
    if vectors is not None and any(v is not None and len(v) for v in vectors):
        frame["vector"] = [np.asarray(v, dtype=np.float32) for v in vectors]
    return frame


def core_hits_frame(
    names: Sequence[str],
    results: Sequence[Sequence[HitLike]],
    fields: Sequence[str] = (),
    *,
    with_vectors: bool = False,
) -> pd.DataFrame:
    """The hits frame of the search core's results (one list per query cell)."""
    rows = []
    vectors = []
    for name, hits in zip(names, results, strict=True):
        for rank, hit in enumerate(hits):
            rows.append(hit_row(name, rank, hit, hit_fields(hit.payload, fields)))
            vectors.append(hit.vector if with_vectors else None)
    return hits_frame(rows, vectors if with_vectors else None)


def annotations_frame(
    names: Sequence[str],
    result: Any,
    *,
    model_version: str = "",
    parameters: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """The core's columnar annotations (``search.annotate.Annotations``) as a frame indexed
    by cell name; ``votes`` reads ``"label id:share;..."`` and ``neighbours`` (when the
    annotation kept them) holds ``(dataset_id, cell_id, distance)`` tuples per cell."""
    unknown = np.asarray(result.is_unknown, dtype=bool)
    labels = [str(t) for t in result.label]
    data: dict[str, Any] = {
        "cell_type_id": labels,
        "cell_type": [t if u else term_label(t) for t, u in zip(labels, unknown, strict=True)],
        "confidence": np.asarray(result.confidence, dtype=np.float32),
        "representation_confidence": np.asarray(result.representation, dtype=np.float32),
        "unknown": unknown,
        "fell_back_to_ancestor": np.asarray(result.via_ancestor, dtype=bool),
        "best_fine_cell_type_id": list(result.best_fine_label),
        "best_fine_cell_type": [term_label(t) for t in result.best_fine_label],
        "competing_cell_type_id": list(result.competing_label),
        "competing_cell_type": [term_label(t) for t in result.competing_label],
        "competing_share": np.asarray(result.competing_share, dtype=np.float32),
        "margin": np.asarray(result.margin, dtype=np.float32),
        "nearest_distance": np.asarray(result.nearest_distance, dtype=np.float32),
        "mean_distance": np.asarray(result.distance, dtype=np.float32),
        "votes": [
            ";".join(f"{lab}:{share:.3f}" for lab, share in zip(labs, shares, strict=True))
            for labs, shares in zip(result.top_labels, result.top_shares, strict=True)
        ],
    }
    if result.neighbours is not None:
        data["neighbours"] = [
            [(h.dataset_id, h.cell_id, float(h.distance)) for h in hits]
            for hits in result.neighbours
        ]
    frame = pd.DataFrame(data, index=pd.Index([str(n) for n in names], name="cell"))
    frame.attrs = {"model_version": model_version, "parameters": dict(parameters or {})}
    return frame


def concat_frames(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Batches of one answer as one frame (the first batch's ``attrs`` kept)."""
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames) if len(frames) > 1 else frames[0]
    out.attrs = dict(frames[0].attrs)
    return out


def write_annotations(
    adata: Any,
    annotations: pd.DataFrame,
    *,
    key_added: str = "cellsearch",
    embeddings: np.ndarray | None = None,
) -> None:
    """Write annotations into an AnnData in place: ``obs[f"{key_added}_<column>"]`` (cells
    not annotated stay empty), ``obsm[f"X_{key_added}"]`` when ``embeddings`` are given,
    and the model version and parameters in ``uns[key_added]``."""
    frame = annotations.reindex([str(c) for c in adata.obs_names])
    for col in frame.columns:
        if col == "neighbours":
            continue
        values = frame[col]
        if values.dtype == object:
            values = values.fillna("").astype(str)
        adata.obs[f"{key_added}_{col}"] = values.to_numpy()
    if embeddings is not None:
        adata.obsm[f"X_{key_added}"] = np.asarray(embeddings, dtype=np.float32)
    adata.uns[key_added] = {
        "model_version": str(annotations.attrs.get("model_version", "")),
        "parameters": {str(k): str(v) for k, v in annotations.attrs.get("parameters", {}).items()},
        "n_annotated": len(annotations),
    }
