"""Proto messages <-> plain values: the servicers' decode and encode steps.

Kept apart from the servicers so each handler reads as decode -> call -> encode, and so
the conversions (which carry the request-shape checks) can be tested on their own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from cellsearch.platform.errors import InvalidRequestError, LimitError
from cellsearch.platform.jobs import DatasetEntry, Job
from cellsearch.search.filters import FilterSpec
from cellsearch.search.frames import hit_fields
from cellsearch.v1 import cellsearch_pb2 as pb

DEFAULT_K = 10
DEFAULT_ANNOTATE_K = 50


def embeddings_to_matrix(msg: pb.Embeddings, dim: int) -> np.ndarray:
    """An ``(n, dim)`` float32 matrix from a packed row-major ``Embeddings``."""
    values = np.asarray(msg.values, dtype=np.float32)
    if msg.dim != dim:
        msg_text = f"embeddings.dim is {msg.dim} but the model embeds cells in {dim} dimensions"
        raise InvalidRequestError(msg_text)
    if values.size == 0 or values.size % dim:
        msg_text = (
            f"embeddings.values holds {values.size} floats, not a positive multiple of "
            f"dim={dim}: send n*{dim} values, row after row"
        )
        raise InvalidRequestError(msg_text)
    return values.reshape(-1, dim)


def matrix_to_embeddings(matrix: np.ndarray) -> pb.Embeddings:
    mat = np.asarray(matrix, dtype=np.float32)
    if mat.ndim == 1:
        mat = mat[None, :]
    return pb.Embeddings(dim=mat.shape[1], values=mat.ravel().tolist())


def _csr_from_packed(msg: pb.CsrCounts, n_genes: int) -> sp.csr_matrix:
    """The packed form: three little-endian arrays, checked before they are trusted."""
    n = int(msg.n_cells)
    if len(msg.indptr) != 8 * (n + 1) or len(msg.indices) % 4 or len(msg.data) % 4:
        text = (
            f"expression.csr is malformed: indptr holds {len(msg.indptr)} bytes for "
            f"{n} cells (need {8 * (n + 1)}), indices {len(msg.indices)} and data "
            f"{len(msg.data)} bytes (multiples of 4)"
        )
        raise InvalidRequestError(text)
    indptr = np.frombuffer(msg.indptr, dtype="<i8")
    indices = np.frombuffer(msg.indices, dtype="<i4")
    data = np.frombuffer(msg.data, dtype="<f4")
    nnz = len(data)
    if (
        n == 0
        or len(indices) != nnz
        or indptr[0] != 0
        or indptr[-1] != nnz
        or np.any(np.diff(indptr) < 0)
    ):
        text = "expression.csr is malformed: indptr must rise from 0 to the number of values"
        raise InvalidRequestError(text)
    if nnz and (indices.min() < 0 or indices.max() >= n_genes):
        text = (
            f"expression.csr refers to gene index {int(indices.max())} but only {n_genes} "
            "genes are listed"
        )
        raise InvalidRequestError(text)
    mat = sp.csr_matrix((data, indices, indptr), shape=(n, n_genes))
    mat.sum_duplicates()
    return mat


def expression_to_csr(msg: pb.ExpressionProfiles) -> tuple[sp.csr_matrix, list[str]]:
    """Raw counts as a ``cells x genes`` CSR matrix and the gene names of its columns."""
    genes = list(msg.genes)
    if not genes:
        text = "expression.genes is empty: list the gene ids or symbols the counts refer to"
        raise InvalidRequestError(text)
    if msg.HasField("csr"):
        if msg.cells:
            text = "expression sets both cells and csr: send the counts in one form"
            raise InvalidRequestError(text)
        return _csr_from_packed(msg.csr, len(genes)), genes
    if not msg.cells:
        text = "expression.cells is empty: send at least one cell's counts"
        raise InvalidRequestError(text)
    indptr = [0]
    indices: list[int] = []
    data: list[float] = []
    for i, cell in enumerate(msg.cells):
        if len(cell.indices) != len(cell.counts):
            text = (
                f"expression.cells[{i}] has {len(cell.indices)} indices but "
                f"{len(cell.counts)} counts; they must pair up"
            )
            raise InvalidRequestError(text)
        if cell.indices and max(cell.indices) >= len(genes):
            text = (
                f"expression.cells[{i}] refers to gene index {max(cell.indices)} but only "
                f"{len(genes)} genes are listed"
            )
            raise InvalidRequestError(text)
        indices.extend(cell.indices)
        data.extend(cell.counts)
        indptr.append(len(indices))
    mat = sp.csr_matrix(
        (np.asarray(data, dtype=np.float32), np.asarray(indices), np.asarray(indptr)),
        shape=(len(msg.cells), len(genes)),
    )
    mat.sum_duplicates()
    return mat, genes


def csr_to_expression(matrix: Any, genes: Sequence[str]) -> pb.ExpressionProfiles:
    mat = sp.csr_matrix(matrix)
    cells = [
        pb.SparseCell(
            indices=mat.indices[mat.indptr[i] : mat.indptr[i + 1]].tolist(),
            counts=mat.data[mat.indptr[i] : mat.indptr[i + 1]].astype(np.float32).tolist(),
        )
        for i in range(mat.shape[0])
    ]
    return pb.ExpressionProfiles(genes=list(genes), cells=cells)


def refs_from_proto(refs: Iterable[pb.CellRef]) -> list[tuple[str, str] | str]:
    """Store references: ``(dataset_id, cell_id)`` or a bare ``cell_id``."""
    out: list[tuple[str, str] | str] = []
    for i, ref in enumerate(refs):
        if not ref.cell_id:
            text = f"cells[{i}].cell_id is empty: every cell reference needs a cell id"
            raise InvalidRequestError(text)
        out.append((ref.dataset_id, ref.cell_id) if ref.dataset_id else ref.cell_id)
    return out


def check_k(k: int, max_k: int, default: int = DEFAULT_K) -> int:
    k = int(k) or default
    if k > max_k:
        text = (
            f"k={k} is over this server's limit of {max_k} neighbours per query cell; ask "
            f"for fewer (the limit is CELLSEARCH_MAX_K)"
        )
        raise LimitError(text)
    return k


def check_n_cells(n: int, max_cells: int) -> None:
    if n > max_cells:
        text = (
            f"the request holds {n} query cells, over this server's limit of {max_cells} "
            f"per request; split it into batches (the limit is CELLSEARCH_MAX_QUERY_CELLS)"
        )
        raise LimitError(text)


def hit_to_proto(hit: Any, fields: Sequence[str], *, with_vector: bool = False) -> pb.Hit:
    vector = hit.vector if with_vector and getattr(hit, "vector", None) is not None else None
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
    return FilterSpec(**values)
