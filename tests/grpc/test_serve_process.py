"""``cellsearch serve`` as a process: embedded store, in-process worker, SIGTERM stops it."""

from __future__ import annotations

import os
import signal

import pytest
from testkit import start_serve

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_serve_answers_then_stops_gracefully_on_sigterm(tmp_path) -> None:
    from cellsearch.client import CellSearchClient

    env = {
        **os.environ,
        "CELLSEARCH_STORE_PATH": str(tmp_path / "store"),
        "CELLSEARCH_GRPC_ADDRESS": "127.0.0.1:0",
        "CELLSEARCH_AUTH_TOKEN": "proc-token",
        "CELLSEARCH_ALLOWED_ROOTS": f'["{tmp_path}"]',
        "CELLSEARCH_SHUTDOWN_GRACE_S": "2",
    }
    proc, address = start_serve(
        env, "--worker", "in-process", banner=r"serving on (\S+) .*worker: in-process"
    )
    try:
        with CellSearchClient(address, token="proc-token", timeout=30) as client:
            assert client.stats()[0] == 0
            assert client.model_info()["dim"] == 128
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
