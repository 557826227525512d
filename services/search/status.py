"""The one place where exceptions become gRPC status codes.

The servicer never picks a status code itself: it lets errors propagate and
:func:`to_status` (applied by :func:`grpc_errors`) maps them here, so every RPC answers the
same error the same way. Only the project's own exception types are mapped: the
platform's categories (``cellsearch.platform.errors``) and the domain libraries' error
bases. Anything else (a ``TypeError``, ``KeyError`` or ``ValueError`` from a bug in server
code) is INTERNAL, logged with its traceback, and its message names only the exception
type, so a server bug is never reported to the client as the client's mistake.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from celldata.errors import DataValidationError
from cellsearch.platform import errors
from encoder.checkpoint import CheckpointError
from ontology.errors import OntologyError
from vectorstore import StoreLockedError

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

#: Most specific first: the first ``isinstance`` match wins.
STATUS_CODES: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (errors.UnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED),
    (errors.LimitError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS),
    (errors.NotFoundError, grpc.StatusCode.NOT_FOUND),
    (errors.PreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.UnavailableError, grpc.StatusCode.UNAVAILABLE),
    (StoreLockedError, grpc.StatusCode.UNAVAILABLE),
    (errors.InvalidRequestError, grpc.StatusCode.INVALID_ARGUMENT),
    (DataValidationError, grpc.StatusCode.INVALID_ARGUMENT),
    (OntologyError, grpc.StatusCode.INVALID_ARGUMENT),
    (CheckpointError, grpc.StatusCode.FAILED_PRECONDITION),
)


def _outages() -> tuple[tuple[type[BaseException], grpc.StatusCode], ...]:
    """Backing services that do not answer (Redis, the broker): UNAVAILABLE, retry."""
    import redis
    from kombu.exceptions import OperationalError as KombuOperationalError

    return (
        (redis.ConnectionError, grpc.StatusCode.UNAVAILABLE),
        (redis.TimeoutError, grpc.StatusCode.UNAVAILABLE),
        (KombuOperationalError, grpc.StatusCode.UNAVAILABLE),
        (ConnectionError, grpc.StatusCode.UNAVAILABLE),
    )


_HINTS: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.UNAVAILABLE: " (a backing service is down; retry with backoff)",
}


@functools.cache
def _cached_table() -> tuple[tuple[type[BaseException], grpc.StatusCode], ...]:
    return STATUS_CODES + _outages()


def to_status(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and the message a person reads for ``exc``."""
    message = str(exc) or type(exc).__name__
    for cls, code in _cached_table():
        if isinstance(exc, cls):
            return code, message + _HINTS.get(code, "")
    return (
        grpc.StatusCode.INTERNAL,
        f"internal error ({type(exc).__name__}); the server log has the details",
    )


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
