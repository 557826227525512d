"""Validation errors: one class per way an input can be wrong, each with a stable ``code``.

Callers (the ingestion worker, the gRPC error mapper, the CLI) branch on ``code`` or the
class; users read the message, which names the column, cell or gene at fault and says
what to do about it. Every error is raised before anything is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


class DataValidationError(ValueError):
    """An input dataset breaks the input contract (see docs/data.md)."""

    code: ClassVar[str] = "invalid_data"

    def __init__(self, message: str, *, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})


class UnreadableFileError(DataValidationError):
    """The file is missing, truncated, or not an .h5ad / 10x .h5 / Matrix Market folder."""

    code = "unreadable_file"


class NotRawCountsError(DataValidationError):
    """Values are negative, non-integer, or look log-normalised."""

    code = "not_raw_counts"


class NegativeCountsError(NotRawCountsError):
    """Some values are negative (scaled or centred data)."""

    code = "negative_counts"


class NonIntegerCountsError(NotRawCountsError):
    """Some values are fractional (normalised or log-normalised data)."""

    code = "non_integer_counts"


class NonFiniteCountsError(NotRawCountsError):
    """Some values are NaN or infinite."""

    code = "non_finite_counts"


class CountTooLargeError(NotRawCountsError):
    """A count above any a cell can hold (e.g. 1e30): a corrupt or mis-scaled matrix."""

    code = "count_too_large"


class EmptyCellsError(DataValidationError):
    """Some cells (or the whole file) have no counts at all."""

    code = "empty_cells"


class DuplicateCellIdsError(DataValidationError):
    """Two or more cells share an id, so their stored points would overwrite each other."""

    code = "duplicate_cell_ids"


class EmptyCellIdError(DataValidationError):
    """A cell whose id (obs_names) is empty: its point id would collide with others."""

    code = "empty_cell_id"


class MissingMetadataError(DataValidationError):
    """A required obs column is absent or has empty values."""

    code = "missing_metadata"


class UnknownTermError(DataValidationError):
    """An ontology id (or a free-text label) that the ontology does not know."""

    code = "unknown_term"


class ObsoleteTermError(DataValidationError):
    """An ontology id that exists but is marked obsolete."""

    code = "obsolete_term"


class InsufficientGeneOverlapError(DataValidationError):
    """Too few of the file's genes are in the model's gene vocabulary."""

    code = "insufficient_gene_overlap"


class WrongSpeciesError(DataValidationError):
    """The genes are not human (e.g. mouse ENSMUSG ids sent to a human model)."""

    code = "wrong_species"
