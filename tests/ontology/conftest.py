"""Fixtures for the ontology tests: a tiny hand-written ontology and the real bundled ones.

The tiny ontology (fixtures/tiny.obo) has a diamond (hybrid cell is_a CD4 T cell and B cell),
a part_of edge, a second root, a shared synonym, a label that is another term's synonym, and
obsolete terms with, without, and through a chain of replacements.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

# pytest's default (prepend) import mode puts tests/ on sys.path, where the folder
# tests/ontology would shadow the real package as a namespace package: the repository root
# goes first. (Redundant once pytest's ``pythonpath = ["."]`` is set in pyproject.toml.)
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import pytest  # noqa: E402

from ontology import KINDS, Ontology, clear_loaded, get_ontology  # noqa: E402

TINY_OBO = Path(__file__).parent / "fixtures" / "tiny.obo"


@pytest.fixture(scope="session")
def tiny_obo() -> Path:
    return TINY_OBO


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny-ontology-cache")


@pytest.fixture(scope="session")
def tiny(tiny_cache: Path) -> Ontology:
    """The hand-written CL-like ontology, loaded through pronto and the closure cache."""
    return Ontology.from_file(TINY_OBO, "cell_type", cache_dir=tiny_cache)


@pytest.fixture(scope="session")
def real_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("real-ontology-cache")


@pytest.fixture(scope="session")
def real(real_cache: Path) -> Iterator[dict[str, Ontology]]:
    """The bundled CL, UBERON and MONDO, registered process-wide so module-level calls use them."""
    clear_loaded()
    yield {kind: get_ontology(kind, cache_dir=real_cache) for kind in KINDS}
    clear_loaded()
