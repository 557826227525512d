"""Build and run the gRPC server.

``build_server(settings)`` returns a started server and the port it bound, so tests run a
real server on port 0. The three cellsearch services, standard health checking and
reflection are registered; a bearer-token interceptor guards every RPC but health when a
token is configured; TLS when a certificate pair is; SIGTERM stops the server gracefully.

Dependencies (store, encoder, job records, the submit hook) are injectable: the CLI's
embedded mode passes one in-process store shared with a worker thread; defaults are
opened from the settings (the encoder once, on first use or at ``serve``).
"""

from __future__ import annotations

import signal
import threading
import time
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from cellsearch.platform.jobs import JobStore
from cellsearch.platform.settings import Settings
from cellsearch.platform.submit import Enqueue
from cellsearch.v1 import cellsearch_pb2, cellsearch_pb2_grpc
from services.search.auth import BearerTokenInterceptor
from services.search.deps import ServiceDeps, build_deps
from services.search.guard import RequestGuard
from services.search.servicer_atlas import AtlasServicer
from services.search.servicer_ingest import IngestionServicer
from services.search.servicer_search import CellSearchServicer

SERVICES = ("CellSearch", "Ingestion", "Atlas")
SERVICE_NAMES = tuple(
    cellsearch_pb2.DESCRIPTOR.services_by_name[name].full_name for name in SERVICES
)

__all__ = ["SERVICE_NAMES", "AtlasServicer", "build_server", "serve"]


def _credentials(settings: Settings) -> grpc.ServerCredentials | None:
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    key = settings.tls_key_file.read_bytes()
    cert = settings.tls_cert_file.read_bytes()
    return grpc.ssl_server_credentials([(key, cert)])


def build_server(
    settings: Settings,
    *,
    store: Any = None,
    encoder: Any = None,
    jobs: JobStore | None = None,
    submit: Enqueue | None = None,
) -> tuple[grpc.Server, int]:
    """Create, bind and start the server; return it with the bound port.

    The :class:`ServiceDeps` it runs on is reachable as ``server.cellsearch_deps`` (the
    CLI closes the store it opened through it after ``stop``).
    """
    deps = build_deps(settings, store=store, encoder=encoder, jobs=jobs, submit=submit)
    options = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
    ]
    # Auth first: the guard (budget, watcher cap, metrics, request ids) sees only calls that
    # carry the token, and each call's decoded request.
    interceptors: list[grpc.ServerInterceptor] = []
    if settings.auth_token is not None and settings.auth_token.get_secret_value():
        interceptors.append(BearerTokenInterceptor(settings.auth_token.get_secret_value()))
    interceptors.append(RequestGuard(settings))
    server = grpc.server(
        futures.ThreadPoolExecutor(
            max_workers=settings.grpc_workers, thread_name_prefix="cellsearch-rpc"
        ),
        options=options,
        interceptors=interceptors,
    )
    cellsearch_pb2_grpc.add_CellSearchServicer_to_server(CellSearchServicer(deps), server)
    cellsearch_pb2_grpc.add_IngestionServicer_to_server(IngestionServicer(deps), server)
    cellsearch_pb2_grpc.add_AtlasServicer_to_server(AtlasServicer(deps), server)

    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )

    credentials = _credentials(settings)
    try:
        if credentials is None:
            port = server.add_insecure_port(settings.grpc_address)
        else:
            port = server.add_secure_port(settings.grpc_address, credentials)
    except RuntimeError as exc:
        deps.close()
        msg = f"could not bind gRPC address {settings.grpc_address!r} ({exc}): is it in use?"
        raise OSError(msg) from exc
    if port == 0:
        deps.close()
        msg = f"could not bind gRPC address {settings.grpc_address!r}: is it in use?"
        raise OSError(msg)
    server.start()
    for name in ["", *SERVICE_NAMES]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    server.cellsearch_deps = deps
    server.cellsearch_health = health_servicer
    return server, port


def deps_of(server: grpc.Server) -> ServiceDeps:
    deps: ServiceDeps = server.cellsearch_deps
    return deps


def stop_server(server: grpc.Server, grace: float | None, *, drain_s: float = 0.0) -> None:
    """Report NOT_SERVING, keep answering for ``drain_s`` (load balancers and clients see
    it and move away), then refuse new calls and let in-flight ones finish within ``grace``;
    close what we opened."""
    health_servicer = getattr(server, "cellsearch_health", None)
    if health_servicer is not None:
        for name in ["", *SERVICE_NAMES]:
            health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        if drain_s > 0:
            time.sleep(drain_s)
        health_servicer.enter_graceful_shutdown()
    server.stop(grace).wait()
    deps_of(server).close()


def serve(settings: Settings, **deps: Any) -> None:
    """Run until SIGTERM or SIGINT, then stop with the configured grace period."""
    server, port = build_server(settings, **deps)
    deps_of(server).preload()
    stopped = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    scheme = "tls" if settings.tls_cert_file else "insecure"
    print(f"cellsearch gRPC server listening on port {port} ({scheme})", flush=True)
    stopped.wait()
    stop_server(server, settings.shutdown_grace_s, drain_s=settings.drain_s)
