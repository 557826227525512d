"""A constructed labelled atlas with real ontology terms, in the embedded store."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

# pytest's prepend import mode puts tests/ on sys.path, where tests/vectorstore would shadow
# the real package; the repository root first keeps ``import vectorstore`` right.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import pytest  # noqa: E402
from search_atlas import build_atlas  # noqa: E402

from vectorstore import CellRecord, CellStore, open_store  # noqa: E402


@pytest.fixture(scope="session")
def atlas() -> list[CellRecord]:
    return build_atlas()


@pytest.fixture(scope="module")
def store(atlas: list[CellRecord]) -> Iterator[CellStore]:
    """The atlas in the embedded engine (on tmpfs when there is one: fast syncs)."""
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(prefix="cellsearch-search-", dir=base) as tmp:
        s = open_store(path=Path(tmp))
        s.upsert(atlas)
        yield s
        s.close()
