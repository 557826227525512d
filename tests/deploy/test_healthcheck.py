"""deploy/healthcheck.py asks a real gRPC server's health service, as the container does."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from deploy_checks import ROOT, load_script

SCRIPT = ROOT / "deploy" / "healthcheck.py"


probe = load_script("cellsearch_healthcheck", SCRIPT)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("address", "target"),
    [
        ("0.0.0.0:50051", "127.0.0.1:50051"),
        ("[::]:50051", "127.0.0.1:50051"),
        ("search.internal:7000", "search.internal:7000"),
        ("127.0.0.1:0", "127.0.0.1:0"),
    ],
)
def test_probe_dials_loopback_for_wildcard_binds(address, target):
    assert probe.probe_target(address) == target


def test_address_without_port_is_refused_with_the_expected_form():
    with pytest.raises(ValueError, match="HOST:PORT"):
        probe.probe_target("search")


@pytest.mark.integration
@pytest.mark.slow
def test_serving_server_passes_and_unknown_service_fails(grpc_server):
    _, port = grpc_server
    ok, reason = probe.check(f"127.0.0.1:{port}")
    assert ok, reason
    assert reason.endswith("SERVING")
    ok, reason = probe.check(f"127.0.0.1:{port}", service="cellsearch.v1.Atlas")
    assert ok, reason
    ok, reason = probe.check(f"127.0.0.1:{port}", service="no.such.Service")
    assert not ok
    assert "NOT_FOUND" in reason


def test_unreachable_server_fails_within_the_timeout():
    ok, reason = probe.check(f"127.0.0.1:{free_port()}", timeout_s=0.5)
    assert not ok
    assert "UNAVAILABLE" in reason or "DEADLINE_EXCEEDED" in reason


@pytest.mark.integration
@pytest.mark.slow
def test_script_exit_status_follows_the_server(grpc_server, tmp_path):
    """Run the file as the compose health check does, configured only by CELLSEARCH_ vars."""
    _, port = grpc_server
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELLSEARCH_")}

    def run(address: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(SCRIPT), "--timeout", "1"],
            env={**env, "CELLSEARCH_GRPC_ADDRESS": address},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    up = run(f"0.0.0.0:{port}")
    assert up.returncode == 0, up.stderr
    assert "SERVING" in up.stdout
    down = run(f"0.0.0.0:{free_port()}")
    assert down.returncode == 1
    assert "127.0.0.1" in down.stderr
