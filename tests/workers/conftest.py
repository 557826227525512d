"""Fixtures of the pipeline tests; the helpers they build on live in ``workers_testkit``.

Test modules import helpers from ``workers_testkit``, never from ``conftest``: several test
folders have a conftest, and a bare ``import conftest`` finds whichever loaded first.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from workers_testkit import TinyEncoder


@pytest.fixture(scope="session")
def tiny_encoder() -> TinyEncoder:
    return TinyEncoder()


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    path = tmp_path / "inbox"
    path.mkdir(exist_ok=True)
    return path
