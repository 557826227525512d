"""The platform's own exceptions, by what the caller should do about them.

Each category is one gRPC status code (``services.search.status`` maps them, and only
them, with the domain libraries' own error bases); anything else that escapes a request
is a bug: INTERNAL, logged with its traceback. Ingestion adds the split the task needs:
permanent refusals (no retry, a stable ``code`` in the job record) versus transient
outages (retried with backoff, the job keeps its progress).
"""

from __future__ import annotations

from typing import ClassVar


class CellsearchError(Exception):
    """Base of every exception the platform raises on purpose."""


class InvalidRequestError(CellsearchError, ValueError):
    """The request cannot be run as given; the message says what to change."""


class NotFoundError(CellsearchError, LookupError):
    """Something the request names (cell, dataset, job, file) does not exist."""


class AlreadyExistsError(CellsearchError):
    """The request would create something that already exists (a dataset id in use)."""


class PreconditionError(CellsearchError):
    """The request is valid but the atlas is not in a state to answer it (e.g. empty)."""


class LimitError(CellsearchError):
    """The request is over a configured limit or budget; split or shrink it."""


class UnavailableError(CellsearchError):
    """A backing component (store, broker, job records) does not answer; retrying may help."""


class UnauthenticatedError(CellsearchError):
    """The call lacks the bearer token the server requires."""


class IngestionRefusedError(InvalidRequestError):
    """A job that can never succeed as submitted; the message tells the user what to change."""

    code: ClassVar[str] = "ingestion_refused"


class PathNotAllowedError(IngestionRefusedError):
    """The path is relative, contains ``..``, or resolves (symlinks followed) outside the roots."""

    code = "path_not_allowed"


class DatasetExistsError(IngestionRefusedError):
    """The dataset id is already in the atlas from another job; delete or re-embed it instead."""

    code = "dataset_exists"


class TransientError(UnavailableError, RuntimeError):
    """A dependency was unavailable; the job keeps its progress and is retried with backoff."""


#: Exception class names, from libraries we do not import here, that mean "try again later".
_TRANSIENT_NAMES = frozenset(
    {
        "ResponseHandlingException",  # qdrant-client: server unreachable / timed out
        "ConnectError",
        "ReadTimeout",
        "WriteTimeout",
        "PoolTimeout",
        "RemoteProtocolError",  # httpx
        "BusyLoadingError",  # redis starting up
    }
)
_TRANSIENT_GRPC_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"})


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` (or its cause) is an outage worth retrying rather than a bad input."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _is_transient_one(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _is_transient_one(exc: BaseException) -> bool:
    if isinstance(exc, TransientError | ConnectionError | TimeoutError):
        return True
    try:
        import redis
    except ImportError:  # pragma: no cover - redis is a dependency
        redis = None  # type: ignore[assignment]
    if redis is not None and isinstance(
        exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError
    ):
        return True
    code = getattr(exc, "code", None)
    if callable(code) and type(exc).__module__.startswith("grpc"):
        try:
            name = getattr(code(), "name", "")
        except Exception:
            name = ""
        if name in _TRANSIENT_GRPC_CODES:
            return True
    return any(cls.__name__ in _TRANSIENT_NAMES for cls in type(exc).__mro__)


class JobFailedError(CellsearchError):
    """An ingestion run in this process ended without success (``Atlas.ingest``)."""

    def __init__(self, job_id: str, code: str, message: str) -> None:
        super().__init__(f"ingestion job {job_id} failed ({code or 'error'}): {message}")
        self.job_id = job_id
        self.code = code
