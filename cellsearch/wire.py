"""The wire format of query cells, both directions in one place: embeddings, raw counts
(packed CSR) and stored-cell references as the proto carries them.

The client encodes with these functions and the servicers decode with them, so the two
ends cannot drift; decoding checks every size and index before trusting the bytes, and
raises :class:`InvalidRequestError` saying what is wrong.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from cellsearch.platform.errors import InvalidRequestError
from cellsearch.v1 import cellsearch_pb2 as pb

CellRefLike = str | tuple[str, str]


# ------------------------------------------------------------------------------ embeddings


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def encode_embeddings(matrix: np.ndarray) -> pb.Embeddings:
    """An ``Embeddings`` message straight from the matrix bytes (packed floats on the wire):
    building it through a Python list costs seconds for a large batch."""
    mat = np.ascontiguousarray(matrix, dtype="<f4")
    raw = mat.tobytes()
    wire = b"\x08" + _varint(int(mat.shape[1])) + b"\x12" + _varint(len(raw)) + raw
    msg = pb.Embeddings()
    msg.ParseFromString(wire)
    return msg


def decode_embeddings(msg: pb.Embeddings, dim: int) -> np.ndarray:
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


# ------------------------------------------------------------------------------ counts


def encode_expression(matrix: Any, genes: Sequence[str]) -> pb.ExpressionProfiles:
    """Raw counts as the packed CSR form of ``ExpressionProfiles`` (no per-cell loop)."""
    mat = sp.csr_matrix(matrix, dtype=np.float32)
    mat.sum_duplicates()
    return pb.ExpressionProfiles(
        genes=list(genes),
        csr=pb.CsrCounts(
            n_cells=mat.shape[0],
            indptr=np.asarray(mat.indptr, dtype="<i8").tobytes(),
            indices=np.asarray(mat.indices, dtype="<i4").tobytes(),
            data=np.asarray(mat.data, dtype="<f4").tobytes(),
        ),
    )


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


def decode_expression(msg: pb.ExpressionProfiles) -> tuple[sp.csr_matrix, list[str]]:
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


# ------------------------------------------------------------------------------ cells


def encode_refs(cells: Iterable[CellRefLike]) -> list[pb.CellRef]:
    out = []
    for ref in cells:
        if isinstance(ref, str):
            out.append(pb.CellRef(cell_id=ref))
        else:
            dataset_id, cell_id = ref
            out.append(pb.CellRef(dataset_id=dataset_id, cell_id=cell_id))
    return out


def decode_refs(refs: Iterable[pb.CellRef]) -> list[tuple[str, str] | str]:
    """Store references: ``(dataset_id, cell_id)`` or a bare ``cell_id``."""
    out: list[tuple[str, str] | str] = []
    for i, ref in enumerate(refs):
        if not ref.cell_id:
            text = f"cells[{i}].cell_id is empty: every cell reference needs a cell id"
            raise InvalidRequestError(text)
        out.append((ref.dataset_id, ref.cell_id) if ref.dataset_id else ref.cell_id)
    return out
