"""Helpers shared by test folders: a flushed Redis test database and a tiny saved model."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
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


def start_serve(
    env: Mapping[str, str], *args: str, banner: str = r"serving on (\S+) ", timeout_s: float = 120.0
) -> tuple[subprocess.Popen[str], str]:
    """``cellsearch serve ARGS`` in a process of its own; ``(process, address)`` once it
    prints a line matching ``banner`` (its group: the address). Its later output is drained
    in a thread, so a chatty server never blocks on a full pipe. The caller stops it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "cellsearch.app.cli", "serve", *args],
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    seen: list[str] = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        found = re.search(banner, line)
        if found:
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            return proc, found.group(1)
    proc.kill()
    proc.wait()
    pytest.fail(f"cellsearch serve did not start: {''.join(seen)[-2000:]}")
