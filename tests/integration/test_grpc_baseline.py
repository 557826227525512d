"""The server's fixed surface: it binds port 0, answers Ping, health and reflection."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from cellsearch import __version__
from cellsearch.v1 import cellsearch_pb2, cellsearch_pb2_grpc

pytestmark = pytest.mark.integration


def test_ping_health_and_reflection(grpc_server) -> None:
    _, port = grpc_server
    assert port > 0
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = cellsearch_pb2_grpc.AtlasStub(channel).Ping(cellsearch_pb2.PingRequest(), timeout=5)
        assert reply.version == __version__

        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING

        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        names = {s.name for r in responses for s in r.list_services_response.service}
    assert "cellsearch.v1.Atlas" in names
    assert "grpc.health.v1.Health" in names


def test_redis_fixture_gives_an_empty_database(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    assert client.dbsize() == 0
    client.set("cellsearch:test", "1")
    assert client.get("cellsearch:test") == b"1"
