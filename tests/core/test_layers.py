"""The layers contract holds on the tree, and rejects an import that goes the wrong way."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("cellsearch", "ontology", "celldata", "encoder", "vectorstore", "workers", "services")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_tree_keeps_its_layers() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "layers: application > adapters > client > core > domain KEPT" in result.stdout


def test_a_core_module_importing_the_grpc_adapter_is_rejected(tmp_path: Path) -> None:
    """The search core reaching up into ``services`` (the way the copies used to grow)."""
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("*.so"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    engine = tmp_path / "cellsearch" / "search" / "engine.py"
    engine.write_text(engine.read_text() + "\nfrom services.search import status  # wrong way\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
    assert "cellsearch.search.engine -> services.search.status" in result.stdout
