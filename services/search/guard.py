"""One interceptor in front of every RPC: request id, metrics, the request budget, watchers.

It sees each decoded request before the servicer does, so:

* the **request budget** (query cells x k, the expected reply size: ``cellsearch.platform.limits``)
  is checked before any work, for Search, SearchCentroid, GetCells and every message of
  an Annotate stream (RESOURCE_EXHAUSTED, with what to change);
* **WatchJob streams are capped** (``max_watchers``, below the server's thread count): a
  watcher holds a server thread for as long as it is open, so without a cap 16 of them
  left no thread for Ping or Search. One over the cap is refused at once; the client
  falls back to polling GetJob;
* every call is **timed** (``cellsearch_rpc_seconds{method,code}``) and **logged with a
  request id** (the client's ``x-request-id`` metadata, else a new one, echoed back in
  the trailing metadata).

Tests: tests/grpc/test_guard.py, tests/stress/test_stress.py.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from cellsearch.platform import ops
from cellsearch.platform.limits import LimitExceededError, check_budget
from cellsearch.platform.settings import Settings
from cellsearch.search.query import DEFAULT_ANNOTATE_K, DEFAULT_K
from vectorstore import DIM as EMBEDDING_DIM

log = logging.getLogger(__name__)


def query_cells(request: Any) -> int:
    """How many query cells a Search/SearchCentroid/Annotate request holds."""
    which = request.WhichOneof("query")
    if which == "embeddings":
        dim = int(request.embeddings.dim) or EMBEDDING_DIM
        return len(request.embeddings.values) // dim
    if which == "expression":
        return len(request.expression.cells)
    if which == "cells":
        return len(request.cells.cells)
    return 0


class RequestGuard(grpc.ServerInterceptor):
    """Budget, watcher cap, latency metrics and request ids for every RPC of a server."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.watchers = threading.BoundedSemaphore(settings.max_watchers)
        self._checks: dict[str, Callable[[Any], None]] = {
            "Search": self._check_search,
            "SearchCentroid": self._check_centroid,
            "GetCells": self._check_get_cells,
            "Annotate": self._check_annotate,
        }

    # -- the budget -----------------------------------------------------------------
    def _budget(self, **kw: Any) -> None:
        s = self.settings
        check_budget(
            max_k=s.max_k,
            max_query_cells=s.max_query_cells,
            max_hits=s.max_request_hits,
            max_reply_bytes=s.max_message_bytes,
            **kw,
        )

    def _check_search(self, req: Any) -> None:
        k = int(req.k) or DEFAULT_K
        self._budget(n_cells=query_cells(req), k=k, with_vectors=bool(req.with_vectors))

    def _check_centroid(self, req: Any) -> None:
        k = int(req.k) or DEFAULT_K
        self._budget(
            n_cells=query_cells(req), k=k, returned_hits=k, with_vectors=bool(req.with_vectors)
        )

    def _check_get_cells(self, req: Any) -> None:
        self._budget(n_cells=len(req.cells), k=1, with_vectors=bool(req.with_vectors))

    def _check_annotate(self, req: Any) -> None:
        self._budget(n_cells=query_cells(req), k=int(req.k) or DEFAULT_ANNOTATE_K, returned_hits=0)

    # -- the interceptor ------------------------------------------------------------
    def intercept_service(
        self, continuation: Callable[[Any], Any], details: grpc.HandlerCallDetails
    ) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        method = details.method.rsplit("/", 1)[-1]
        metadata = dict(details.invocation_metadata or ())
        rid = str(metadata.get("x-request-id") or ops.new_request_id())[:64]
        # a handler without a deserializer (one that refuses the call) gets raw bytes: no check
        check = self._checks.get(method) if handler.request_deserializer else None
        if handler.unary_unary is not None:
            inner = handler.unary_unary

            def unary(request: Any, context: grpc.ServicerContext) -> Any:
                with _Call(method, rid, context):
                    if check is not None:
                        _guarded(check, request, context)
                    return inner(request, context)

            return grpc.unary_unary_rpc_method_handler(
                unary, handler.request_deserializer, handler.response_serializer
            )
        if handler.unary_stream is not None:
            inner_us = handler.unary_stream
            watch = method == "WatchJob"

            def unary_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                with _Call(method, rid, context):
                    if watch and not self.watchers.acquire(blocking=False):
                        context.abort(
                            grpc.StatusCode.RESOURCE_EXHAUSTED,
                            f"{self.settings.max_watchers} job watchers are open, this "
                            "server's limit (CELLSEARCH_MAX_WATCHERS); poll GetJob instead",
                        )
                    try:
                        if watch:
                            ops.WATCHERS.inc()
                        yield from inner_us(request, context)
                    finally:
                        if watch:
                            ops.WATCHERS.dec()
                            self.watchers.release()

            return grpc.unary_stream_rpc_method_handler(
                unary_stream, handler.request_deserializer, handler.response_serializer
            )
        if handler.stream_stream is not None:
            inner_ss = handler.stream_stream

            def stream_stream(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
                with _Call(method, rid, context):
                    checked = requests if check is None else _checked(check, requests)
                    yield from inner_ss(checked, context)

            return grpc.stream_stream_rpc_method_handler(
                stream_stream, handler.request_deserializer, handler.response_serializer
            )
        return handler  # stream-unary: none in our services


def _guarded(check: Callable[[Any], None], request: Any, context: grpc.ServicerContext) -> None:
    try:
        check(request)
    except LimitExceededError as exc:
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))


def _checked(check: Callable[[Any], None], requests: Iterator[Any]) -> Iterator[Any]:
    """The stream's messages, each checked (the servicer maps the error to its status)."""
    for request in requests:
        check(request)
        yield request


class _Call:
    """Sets the request id for the call's thread; times it by method and final code."""

    def __init__(self, method: str, rid: str, context: grpc.ServicerContext) -> None:
        self.method, self.rid, self.context = method, rid, context

    def __enter__(self) -> _Call:
        self.token = ops.REQUEST_ID.set(self.rid)
        self.start = time.perf_counter()
        ops.RPC_IN_FLIGHT.labels(self.method).inc()
        with contextlib.suppress(Exception):  # a context refusing metadata (fakes) is fine
            self.context.set_trailing_metadata((("x-request-id", self.rid),))
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        seconds = time.perf_counter() - self.start
        code = _code_of(self.context, exc)
        ops.RPC_IN_FLIGHT.labels(self.method).dec()
        ops.RPC_SECONDS.labels(self.method, code).observe(seconds)
        if code not in ("OK", "CANCELLED"):
            log.info("rpc %s ended %s after %.3f s", self.method, code, seconds)
        ops.REQUEST_ID.reset(self.token)


def _code_of(context: grpc.ServicerContext, exc: BaseException | None) -> str:
    try:
        code = context.code()
    except Exception:
        code = None
    if code is not None:
        return str(getattr(code, "name", code))
    if exc is not None and not isinstance(exc, GeneratorExit):
        return "UNKNOWN"
    return "OK"
