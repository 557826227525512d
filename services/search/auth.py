"""Bearer-token authentication as a server interceptor.

Every RPC needs ``authorization: Bearer <token>`` metadata when the server has a token
configured, except the standard health service: load balancers and orchestrators probe
health without credentials. The check runs before the servicer, so no handler can forget
it; tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

import grpc

HEALTH_PREFIX = "/grpc.health.v1.Health/"

_MISSING = (
    "this server requires a bearer token: send metadata "
    "'authorization: Bearer <token>' (the CLI and CellSearchClient read CELLSEARCH_AUTH_TOKEN)"
)
_WRONG = "the bearer token in 'authorization' metadata is not valid for this server"


def _deny(message: str) -> Callable[[Any, grpc.ServicerContext], Any]:
    def handler(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    return handler


def _denying_handler(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same streaming shape as ``handler`` that refuses the call."""
    deny = _deny(message)
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(deny)
    return grpc.unary_unary_rpc_method_handler(deny)


class BearerTokenInterceptor(grpc.ServerInterceptor):
    """Refuse every call but health checks that lacks ``authorization: Bearer <token>``."""

    def __init__(self, token: str) -> None:
        if not token:
            msg = "BearerTokenInterceptor needs a non-empty token; leave auth off instead"
            raise ValueError(msg)
        self._expected = f"Bearer {token}".encode()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(HEALTH_PREFIX):
            return handler
        sent = dict(handler_call_details.invocation_metadata or ()).get("authorization")
        if sent is None:
            return _denying_handler(handler, _MISSING)
        sent_bytes = sent.encode() if isinstance(sent, str) else bytes(sent)
        if not hmac.compare_digest(sent_bytes, self._expected):
            return _denying_handler(handler, _WRONG)
        return handler
