"""Build and run the gRPC server.

``build_server(settings)`` returns a started server and the port it bound, so
tests run a real server on port 0. Health checking and reflection are always
registered; SIGTERM stops the server gracefully.
"""

from __future__ import annotations

import signal
import threading
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from cellsearch import __version__
from cellsearch.settings import Settings
from cellsearch.v1 import cellsearch_pb2, cellsearch_pb2_grpc


class AtlasServicer(cellsearch_pb2_grpc.AtlasServicer):
    """Questions about the platform itself."""

    def Ping(
        self, request: cellsearch_pb2.PingRequest, context: grpc.ServicerContext
    ) -> cellsearch_pb2.PingReply:
        return cellsearch_pb2.PingReply(version=__version__)


def build_server(settings: Settings) -> tuple[grpc.Server, int]:
    """Create, bind and start the server; return it with the bound port."""
    options = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
    ]
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.grpc_workers), options=options
    )
    cellsearch_pb2_grpc.add_AtlasServicer_to_server(AtlasServicer(), server)

    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    service_names = [
        cellsearch_pb2.DESCRIPTOR.services_by_name["Atlas"].full_name,
        health.SERVICE_NAME,
        reflection.SERVICE_NAME,
    ]
    reflection.enable_server_reflection(service_names, server)

    port = server.add_insecure_port(settings.grpc_address)
    if port == 0:
        msg = f"could not bind gRPC address {settings.grpc_address!r}: is it in use?"
        raise OSError(msg)
    server.start()
    for name in ["", *service_names[:1]]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, port


def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then stop with the configured grace period."""
    server, port = build_server(settings)
    stopped = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        server.stop(settings.shutdown_grace_s).wait()
        stopped.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"cellsearch gRPC server listening on port {port}", flush=True)
    stopped.wait()
