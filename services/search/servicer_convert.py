"""Proto messages <-> plain values: the servicers' decode and encode steps.

Kept apart from the servicers so each handler reads as decode -> call -> encode, and so
the conversions (which carry the request-shape checks) can be tested on their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np

from cellsearch.platform.jobs import DatasetEntry, Job
from cellsearch.search.filters import FilterSpec
from cellsearch.search.frames import hit_fields
from cellsearch.v1 import cellsearch_pb2 as pb


def hit_to_proto(hit: Any, fields: Sequence[str], *, with_vector: bool = False) -> pb.Hit:
    vector = hit.vector if with_vector else None
    return pb.Hit(
        cell_id=hit.cell_id,
        dataset_id=hit.dataset_id,
        score=float(hit.score),
        distance=float(hit.distance),
        fields=hit_fields(hit.payload, fields),
        vector=[] if vector is None else np.asarray(vector, dtype=np.float32).tolist(),
    )


def job_to_proto(job: Job) -> pb.Job:
    return pb.Job(
        job_id=job.job_id,
        dataset_id=job.dataset_id,
        study_id=job.study_id,
        path=job.path,
        state=pb.JobState.Value(str(job.state)),
        cells_done=job.cells_done,
        cells_total=job.cells_total,
        stage_seconds=dict(job.stage_seconds),
        error=job.error,
        error_code=job.error_code,
        cancel_requested=job.cancel_requested,
        created_at=job.created_at,
        updated_at=job.updated_at,
        metadata=dict(job.metadata),
        attempts=job.attempts,
    )


def dataset_to_proto(entry: DatasetEntry) -> pb.Dataset:
    return pb.Dataset(
        dataset_id=entry.dataset_id,
        study_id=entry.study_id,
        path=entry.path,
        n_cells=entry.n_cells,
        genes_matched=entry.genes_matched,
        genes_total=entry.genes_total,
        model_version=entry.model_version,
        job_id=entry.job_id,
        metadata=dict(entry.metadata),
        ingested_at=entry.ingested_at,
    )


def filter_spec(msg: pb.Filter | None) -> FilterSpec | None:
    """The search core's filter spec for a request's ``Filter`` (None when unset): the two
    share their field names, so every proto field reaches the core."""
    if msg is None:
        return None
    values = {
        f.name: tuple(getattr(msg, f.name)) if f.type == f.TYPE_STRING else getattr(msg, f.name)
        for f in msg.DESCRIPTOR.fields
    }
    return FilterSpec(**cast("dict[str, Any]", values))
