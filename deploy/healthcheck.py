"""Container health probe for the search service: one ``grpc.health.v1.Health/Check`` call.

Docker and Compose judge health by a command's exit status, and the service's real liveness
signal is the standard gRPC health service it registers, so this asks exactly that (the same
question a load balancer or ``grpc-health-probe`` asks) instead of only testing that the port
is open. The address, TLS files and message limits come from the service's own
``CELLSEARCH_`` settings, so the probe follows whatever the container is configured with.

Exit status: 0 when the server answers SERVING, 1 otherwise (not serving, unreachable, timed
out), with the reason on stderr for ``docker inspect``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

_WILDCARD_HOSTS = {"", "0.0.0.0", "[::]", "::", "*"}


def probe_target(grpc_address: str) -> str:
    """Where to dial for a server bound to ``grpc_address`` (wildcard hosts mean loopback)."""
    host, sep, port = grpc_address.rpartition(":")
    if not sep or not port.isdigit():
        msg = f"gRPC address {grpc_address!r} has no numeric port; expected HOST:PORT"
        raise ValueError(msg)
    if host in _WILDCARD_HOSTS:
        host = "127.0.0.1"
    return f"{host}:{port}"


def check(
    target: str,
    *,
    service: str = "",
    timeout_s: float = 3.0,
    root_cert: bytes | None = None,
    server_name: str | None = None,
) -> tuple[bool, str]:
    """Ask the server at ``target`` whether ``service`` is SERVING; return (ok, reason)."""
    if root_cert is None:
        channel = grpc.insecure_channel(target)
    else:
        options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
        creds = grpc.ssl_channel_credentials(root_certificates=root_cert)
        channel = grpc.secure_channel(target, creds, options=options)
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        except grpc.RpcError as exc:
            return False, f"{target}: {exc.code().name}: {exc.details()}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING, f"{target}: {status}"


def main(argv: Sequence[str] | None = None) -> int:
    """Probe the server configured by the environment; exit 0 only when it is SERVING."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--service", default="", help="service name to check ('' = server)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for a reply")
    parser.add_argument(
        "--server-name",
        default="localhost",
        help="TLS name to expect in the server certificate when TLS is on",
    )
    args = parser.parse_args(argv)

    from cellsearch.platform.settings import Settings

    settings = Settings()
    root_cert = None
    if settings.tls_cert_file is not None:
        root_cert = Path(settings.tls_cert_file).read_bytes()
    ok, reason = check(
        probe_target(settings.grpc_address),
        service=args.service,
        timeout_s=args.timeout,
        root_cert=root_cert,
        server_name=args.server_name,
    )
    print(reason, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
