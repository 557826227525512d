"""Shared fixtures: a flushed Redis database, a temp embedded-store folder, a gRPC server on port 0.

Integration fixtures talk to the real components. Redis must answer on
127.0.0.1:6379 (``.ci/run`` starts it when it does not); tests use database 15
and flush it before and after each test so they never touch real data.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from testkit import flushed_redis

TEST_REDIS_URL = os.environ.get("CELLSEARCH_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis URL on a test database, flushed before and after the test."""
    with flushed_redis(TEST_REDIS_URL) as url:
        yield url


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    """An empty folder for an embedded Qdrant store."""
    path = tmp_path / "store"
    path.mkdir()
    return path


@pytest.fixture
def settings(tmp_path: Path, store_path: Path, redis_url: str):
    """Settings pointing at the temp store, the test Redis database and port 0."""
    from cellsearch.platform.settings import Settings

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    return Settings(
        store_path=store_path,
        redis_url=redis_url,
        grpc_address="127.0.0.1:0",
        allowed_roots=(inbox,),
        ontology_cache_dir=tmp_path / "ontology-cache",
    )


@pytest.fixture
def grpc_server(settings):
    """A real gRPC server on a free port: yields ``(server, port)`` and stops it after."""
    from services.search.server import build_server

    server, port = build_server(settings)
    yield server, port
    server.stop(grace=None).wait()
