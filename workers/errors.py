"""Why an ingestion job stops: permanent refusals (no retry) versus transient outages (retry).

The task retries only what may succeed later (the store or Redis unreachable); a bad path,
a bad file or a dataset that already exists fail at once with a message that says what to
do. Each permanent error carries a stable ``code`` that lands in the job record.
"""

from __future__ import annotations

from typing import ClassVar


class IngestionRefusedError(ValueError):
    """A job that can never succeed as submitted; the message tells the user what to change."""

    code: ClassVar[str] = "ingestion_refused"


class PathNotAllowedError(IngestionRefusedError):
    """The path is relative, contains ``..``, or resolves (symlinks followed) outside the roots."""

    code = "path_not_allowed"


class DatasetExistsError(IngestionRefusedError):
    """The dataset id is already in the atlas from another job; delete or re-embed it instead."""

    code = "dataset_exists"


class TransientError(RuntimeError):
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
