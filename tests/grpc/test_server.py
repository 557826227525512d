"""The server's standard surface and its behaviour under load, TLS and shutdown."""

from __future__ import annotations

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from cellsearch.client import CellSearchClient, CellSearchError

pytestmark = pytest.mark.integration


def test_health_is_serving_without_a_token(server_env) -> None:
    with grpc.insecure_channel(server_env.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "cellsearch.v1.CellSearch", "cellsearch.v1.Ingestion"):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_services(server_env) -> None:
    metadata = (("authorization", "Bearer test-token-0123"),)
    with grpc.insecure_channel(server_env.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
            timeout=5,
            metadata=metadata,
        )
        names = {s.name for r in replies for s in r.list_services_response.service}
    assert {
        "cellsearch.v1.CellSearch",
        "cellsearch.v1.Ingestion",
        "cellsearch.v1.Atlas",
        "grpc.health.v1.Health",
    } <= names


def test_one_hundred_concurrent_searches_all_answered(server_env, centers) -> None:
    names = list(centers)
    rng = np.random.default_rng(3)

    def one(i: int) -> tuple[str, set[str]]:
        name = names[i % len(names)]
        query = centers[name] + rng.normal(scale=0.02, size=128)
        hits = client.search(query, k=5, fields=["cell_type"])
        return name, set(hits["cell_type"])

    with server_env.client() as client, ThreadPoolExecutor(max_workers=100) as pool:
        answers = list(pool.map(one, range(100)))
    assert len(answers) == 100
    assert all(got == {want} for want, got in answers)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_server_and_client(settings, atlas_free_store, tmp_path: Path) -> None:
    from services.search.server import build_server

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    tls = settings.model_copy(update={"tls_cert_file": cert, "tls_key_file": key})
    server, port = build_server(tls, store=atlas_free_store, submit=lambda job_id: None)
    try:
        with CellSearchClient(f"localhost:{port}", root_certificates=cert.read_bytes()) as c:
            assert c.stats()[0] == 0
        # plaintext is refused
        with grpc.insecure_channel(f"localhost:{port}") as plain, pytest.raises(grpc.RpcError):
            health_pb2_grpc.HealthStub(plain).Check(health_pb2.HealthCheckRequest(), timeout=2)
    finally:
        server.stop(grace=None).wait()


def test_graceful_stop_reports_not_serving_and_closes_its_store(settings) -> None:
    from cellsearch.platform.jobs import MemoryJobStore
    from services.search.server import build_server, deps_of, stop_server

    server, port = build_server(settings, jobs=MemoryJobStore(), submit=lambda job_id: None)
    deps = deps_of(server)
    assert deps.owns_store  # opened from settings, so the server closes it
    with CellSearchClient(f"127.0.0.1:{port}") as client:
        assert client.stats()[0] == 0
    stop_server(server, grace=1.0)
    client = CellSearchClient(f"127.0.0.1:{port}", timeout=2)
    with client, pytest.raises(CellSearchError) as info:
        client.ping()
    assert info.value.code == grpc.StatusCode.UNAVAILABLE
