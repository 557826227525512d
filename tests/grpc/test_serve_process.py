"""``cellsearch serve`` as a process: embedded store, in-process worker, SIGTERM stops it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

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
    proc = subprocess.Popen(
        [sys.executable, "-m", "cellsearch.app.cli", "serve", "--worker", "in-process"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = ""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if "serving on" in line or not line:
                break
        match = re.search(r"serving on (\S+) .*worker: in-process", line)
        assert match, f"server did not start: {line!r}"
        with CellSearchClient(match.group(1), token="proc-token", timeout=30) as client:
            assert client.stats()[0] == 0
            assert client.model_info()["dim"] == 128
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
