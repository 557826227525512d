"""Helpers shared by test folders: a flushed Redis test database and a tiny saved model."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def flushed_redis(url: str) -> Iterator[str]:
    """``url``'s Redis database, flushed before and after (fails the test if Redis is down)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.ConnectionError as exc:  # pragma: no cover - environment problem
        pytest.fail(f"Redis does not answer at {url}: {exc}; start redis-server")
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


def save_tiny_model(folder: Path) -> Path:
    """An untrained encoder over the simulated atlas's genes (fast to load), saved to ``folder``."""
    from celldata.simulate import atlas_genes
    from encoder import CellEncoder, EncoderConfig
    from encoder.module import AutoEncoder

    genes = atlas_genes()
    model = CellEncoder(AutoEncoder(EncoderConfig(n_genes=len(genes), hidden_dims=(64,))), genes)
    model.save(folder)
    return folder
