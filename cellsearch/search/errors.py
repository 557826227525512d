"""Domain errors of the search core, each with a message that says how to fix the request.

They subclass the platform's error categories (``cellsearch.platform.errors``), which are
also the built-in ``ValueError`` (bad input) or ``LookupError`` (something named that does
not exist), so plain Python callers can catch them broadly; the gRPC layer maps the
categories to status codes in one place.
"""

from __future__ import annotations

from collections.abc import Sequence

from cellsearch.platform.errors import (
    CellsearchError,
    InvalidRequestError,
    LimitError,
    NotFoundError,
    PreconditionError,
)


class SearchError(CellsearchError):
    """Base of every search-core error."""


class InvalidQueryError(SearchError, InvalidRequestError):
    """A request that cannot be run as given (empty query, contradictory filter, ...)."""


class KTooLargeError(InvalidQueryError, LimitError):
    """``k`` above the configured maximum."""

    def __init__(self, k: int, max_k: int) -> None:
        msg = (
            f"k={k} is above this service's limit of {max_k} neighbours per query cell; ask "
            f"for at most {max_k}, or narrow the filter (the limit is CELLSEARCH_MAX_K)"
        )
        super().__init__(msg)
        self.k = k
        self.max_k = max_k


class TooManyQueryCellsError(InvalidQueryError, LimitError):
    """More query cells than the configured maximum."""

    def __init__(self, n: int, max_cells: int) -> None:
        msg = (
            f"the request holds {n} query cells, over the limit of {max_cells} per request; "
            "split it into batches (the limit is CELLSEARCH_MAX_QUERY_CELLS)"
        )
        super().__init__(msg)
        self.n = n
        self.max_cells = max_cells


class FilterTermError(InvalidQueryError):
    """A filter term the ontology cannot resolve; carries the ontology's suggestions."""

    def __init__(self, field: str, text: str, reason: str, suggestions: Sequence[str] = ()) -> None:
        hint = f"; did you mean {', '.join(suggestions[:5])}?" if suggestions else ""
        msg = f"filter {field}: cannot use {text!r}: {reason}{hint}"
        super().__init__(msg)
        self.field = field
        self.text = text
        self.suggestions = list(suggestions)


class UnknownCellError(SearchError, NotFoundError):
    """Query cells named by id that the store does not hold."""

    def __init__(self, missing: Sequence[str]) -> None:
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        msg = (
            f"{len(missing)} query cell(s) are not in the atlas: {shown}; check the ids "
            "(dataset_id/cell_id) or ingest the dataset first"
        )
        super().__init__(msg)
        self.missing = list(missing)


class EmptyReferenceError(SearchError, PreconditionError, LookupError):
    """Annotation or calibration over a reference that holds no (admissible) cells."""
