"""THE rule for where a dataset's raw counts live, on every path.

Ingestion (files, read through h5py by :mod:`celldata.read`), annotation, search by
expression and ``CellEncoder.embed`` (AnnData objects and matrices in memory) all pick the
matrix the same way and refuse the same inputs with the same message:

1. ``layers["counts"]`` when present and holding counts;
2. else ``.raw`` when it holds counts (CELLxGENE's layout: log-normalised ``X``, counts in
   ``.raw``);
3. else ``X``, which must then hold raw counts.

A ``layer=`` argument ("X", "raw", "counts" or any layer name) overrides the choice. The
values are checked by :func:`check_raw_counts`, the check ingestion runs, so
log-normalised input is refused with ingestion's message, never embedded as if it were counts.
Tests: ``tests/celldata/test_counts.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from celldata.errors import (
    CountTooLargeError,
    NegativeCountsError,
    NonFiniteCountsError,
    NonIntegerCountsError,
    NotRawCountsError,
)

#: Where counts are looked for, in order (file locations as :mod:`celldata.read` names them).
COUNTS_ORDER: tuple[str, ...] = ("layers/counts", "raw", "X")
_SAMPLE_ROWS = 2000
_SAMPLE_VALUES = 200_000


def choose_counts_location(present: Sequence[str], holds_counts: Callable[[str], bool]) -> str:
    """The first location of :data:`COUNTS_ORDER` that is present and holds counts; ``""``
    when none does (the caller then reports why, from ``X``)."""
    for location in COUNTS_ORDER:
        if location in present and holds_counts(location):
            return location
    return ""


def looks_like_counts(values: np.ndarray) -> bool:
    """Non-negative integers (the empty sample counts as raw)."""
    if values.size == 0:
        return True
    return bool(values.min() >= 0 and np.all(values == np.round(values)))


def sample_values(matrix: Any, n_rows: int = _SAMPLE_ROWS) -> np.ndarray:
    """Stored values of up to ``n_rows`` rows spread over a matrix (cheap on any size)."""
    n = int(matrix.shape[0])
    if n == 0:
        return np.zeros(0, dtype=np.float32)
    rows = np.unique(np.linspace(0, n - 1, num=min(n, n_rows)).astype(np.int64))
    part = matrix[rows] if len(rows) < n else matrix[:]
    if hasattr(part, "to_memory"):  # anndata backed sparse dataset
        part = part.to_memory()
    if sp.issparse(part):
        values = np.asarray(sp.csr_matrix(part).data)
    else:
        dense = np.asarray(part)
        values = dense[dense != 0]
    return values[:_SAMPLE_VALUES]


#: The largest count accepted: float32 (what counts are read as) holds every integer up to
#: 2**24 exactly, and no cell holds 16.7 million molecules of one gene; above it (1e30 in a
#: corrupt file) the embedding would be garbage.
MAX_COUNT = float(2**24)


def check_raw_counts(values: np.ndarray, *, where: str, location: str) -> None:
    """Raise a :class:`NotRawCountsError` subclass for NaN/inf, negative, non-integer,
    log-normalised or absurdly large values (each its own code)."""
    if values.size == 0:
        return
    finite = np.isfinite(values)
    if not finite.all():
        example = float(values[~finite][0])
        msg = (
            f"{where}: {location} has {int((~finite).sum())} NaN or infinite value(s) "
            f"(e.g. {example}); raw counts are finite non-negative integers. Re-export the "
            "matrix"
        )
        raise NonFiniteCountsError(msg, details={"location": location, "example": str(example)})
    low = float(values.min())
    if low < 0:
        msg = (
            f"{where}: {location} has negative values (min {low:g}); it looks scaled or "
            "centred. Provide raw UMI counts (non-negative integers) in X, layers['counts'] "
            "or .raw"
        )
        raise NegativeCountsError(msg, details={"location": location, "min": low})
    fractional = values != np.round(values)
    if fractional.any():
        example = float(values[fractional][0])
        high = float(values.max())
        kind = "log-normalised" if high < 30 else "normalised"
        msg = (
            f"{where}: {location} has non-integer values (e.g. {example:g}, max {high:g}); it "
            f"looks {kind}, not raw counts. Provide the raw UMI counts (before "
            "normalize_total/log1p) in X, layers['counts'] or .raw"
        )
        raise NonIntegerCountsError(msg, details={"location": location, "example": example})
    high = float(values.max())
    if high > MAX_COUNT:
        msg = (
            f"{where}: {location} has a count of {high:g}, above any a cell holds (limit "
            f"{MAX_COUNT:g}); the matrix is corrupt or mis-scaled. Provide raw UMI counts"
        )
        raise CountTooLargeError(msg, details={"location": location, "max": high})


def check_counts(matrix: Any, *, where: str, location: str) -> None:
    """Refuse a matrix that does not hold raw counts, with ingestion's message."""
    check_raw_counts(sample_values(matrix), where=where, location=location)


@dataclass(frozen=True)
class Counts:
    """The raw counts of an AnnData: the matrix (maybe backed), its genes, where it was."""

    matrix: Any
    var_names: list[str]
    location: str


def _layer_location(layer: str) -> str:
    if layer in ("X", "raw"):
        return layer
    return f"layers/{layer.removeprefix('layers/')}"


def counts_of(adata: Any, layer: str | None = None, *, where: str = "the AnnData") -> Counts:
    """The raw counts of an AnnData by the one rule (or from ``layer``), checked.

    Raises :class:`~celldata.errors.NotRawCountsError` (ingestion's message) when the chosen
    matrix is log-normalised, scaled or otherwise not raw counts, and when ``layer`` names a
    matrix the AnnData does not have.
    """
    matrices: dict[str, tuple[Any, list[str]]] = {}
    names = [str(g) for g in adata.var_names]
    for name in list(adata.layers):
        matrices[f"layers/{name}"] = (adata.layers[name], names)
    if adata.raw is not None:
        matrices["raw"] = (adata.raw.X, [str(g) for g in adata.raw.var_names])
    if adata.X is not None:
        matrices["X"] = (adata.X, names)
    if layer is not None and layer != "auto":
        location = _layer_location(layer)
        if location not in matrices:
            msg = (
                f"{where} has no {location!r} matrix (present: {', '.join(matrices) or 'none'}); "
                "pass layer=None to use the counts rule or name the matrix holding raw counts"
            )
            raise NotRawCountsError(msg, details={"location": location})
    else:
        location = choose_counts_location(
            list(matrices), lambda loc: looks_like_counts(sample_values(matrices[loc][0]))
        )
        location = location or ("X" if "X" in matrices else next(iter(matrices), ""))
        if not location:
            msg = f"{where} holds no expression matrix (no X, layers['counts'] or .raw)"
            raise NotRawCountsError(msg)
    matrix, var_names = matrices[location]
    check_counts(matrix, where=where, location=location)
    return Counts(matrix=matrix, var_names=var_names, location=location)
