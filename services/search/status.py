"""The one place where our exceptions become gRPC status codes.

The servicer never picks a status code itself: it lets domain errors propagate and
:func:`to_status` (applied by :func:`grpc_errors`) maps them here, so every RPC answers
the same error the same way. The message is the exception's own text, which by house
rule already says what to change; a few codes get a hint appended (what to retry, where
the limit is configured). Anything unmapped is an INTERNAL error whose message names the
exception type (never a traceback: that goes to the server log).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from cellsearch.jobs import DatasetNotFoundError, DatasetTakenError, JobNotFoundError
from cellsearch.limits import LimitExceededError

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


class RequestLimitError(Exception):
    """A request over a configured size limit (k, query cells, batch, message size)."""


class NotFoundError(LookupError):
    """A referenced object (cell, dataset, job) does not exist."""


class PreconditionError(Exception):
    """The request is valid but the atlas is not in a state to answer it (e.g. empty)."""


class UnavailableError(Exception):
    """A backing component (store, broker, job records) does not answer; retrying may help."""


class UnauthenticatedError(Exception):
    """The call lacks the bearer token the server requires."""


def _table() -> list[tuple[type[BaseException], grpc.StatusCode]]:
    """Most specific first: the first ``isinstance`` match wins."""
    import redis
    from kombu.exceptions import OperationalError as KombuOperationalError

    table: list[tuple[type[BaseException], grpc.StatusCode]] = [
        (UnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED),
        (RequestLimitError, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (LimitExceededError, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (DatasetTakenError, grpc.StatusCode.ALREADY_EXISTS),
        (NotFoundError, grpc.StatusCode.NOT_FOUND),
        (JobNotFoundError, grpc.StatusCode.NOT_FOUND),
        (DatasetNotFoundError, grpc.StatusCode.NOT_FOUND),
        (PreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
        (UnavailableError, grpc.StatusCode.UNAVAILABLE),
        (redis.ConnectionError, grpc.StatusCode.UNAVAILABLE),
        (redis.TimeoutError, grpc.StatusCode.UNAVAILABLE),
        (KombuOperationalError, grpc.StatusCode.UNAVAILABLE),
        (ConnectionError, grpc.StatusCode.UNAVAILABLE),
    ]
    table.extend(_search_core_table())
    # Every remaining ValueError (ontology errors, data validation, bad vectors) is the
    # caller's to fix.
    table.append((ValueError, grpc.StatusCode.INVALID_ARGUMENT))
    table.append((TypeError, grpc.StatusCode.INVALID_ARGUMENT))
    table.append((KeyError, grpc.StatusCode.NOT_FOUND))
    return table


def _search_core_table() -> list[tuple[type[BaseException], grpc.StatusCode]]:
    """Codes for the search core's domain exceptions (``services/search/errors.py``)."""
    from services.search import errors

    return [
        (errors.KTooLargeError, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (errors.TooManyQueryCellsError, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (errors.UnknownCellError, grpc.StatusCode.NOT_FOUND),
        (errors.EmptyReferenceError, grpc.StatusCode.FAILED_PRECONDITION),
        (errors.InvalidQueryError, grpc.StatusCode.INVALID_ARGUMENT),
    ]


_HINTS: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.UNAVAILABLE: " (a backing service is down; retry with backoff)",
}


@functools.cache
def _cached_table() -> tuple[tuple[type[BaseException], grpc.StatusCode], ...]:
    return tuple(_table())


def to_status(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and the message a person reads for ``exc``."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, KeyError) and exc.args:
        message = str(exc.args[0])
    for cls, code in _cached_table():
        if isinstance(exc, cls):
            return code, message + _HINTS.get(code, "")
    return grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}): {message}"


def abort(context: grpc.ServicerContext, exc: BaseException) -> None:
    """End the call with ``exc``'s status (``context.abort`` raises, so this never returns)."""
    code, message = to_status(exc)
    if code == grpc.StatusCode.INTERNAL:
        log.exception("unexpected error in RPC", exc_info=exc)
    context.abort(code, message)


def _is_abort(exc: BaseException) -> bool:
    # context.abort raises a bare Exception after setting the status; let it through.
    return type(exc) is Exception and not exc.args


def grpc_errors(method: F) -> F:
    """Decorate a servicer method so domain errors become status codes (unary or streaming)."""
    import inspect

    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def stream(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            try:
                yield from method(self, request, context)
            except Exception as exc:
                if _is_abort(exc):
                    raise
                abort(context, exc)

        return stream  # type: ignore[return-value]

    @functools.wraps(method)
    def unary(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except Exception as exc:
            if _is_abort(exc):
                raise
            abort(context, exc)
            return None

    return unary  # type: ignore[return-value]
