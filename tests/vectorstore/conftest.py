"""A small constructed atlas and a store fixture run on every backend (congruence tests)."""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

# pytest's default (prepend) import mode puts tests/ on sys.path, where the folder
# tests/vectorstore would shadow the real package as a namespace package; the repository
# root first keeps ``import vectorstore`` pointing at the code. (Redundant once pytest's
# ``pythonpath = ["."]`` is set in pyproject.toml.)
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from vectorstore import CellRecord, CellStore, StoreConfig, open_store  # noqa: E402

# A hand-written slice of the Cell Ontology: each type with its ancestors (self included).
T_CELL = "CL:0000084"
CELL_TYPES: dict[str, list[str]] = {
    "CL:0000624": ["CL:0000624", T_CELL, "CL:0000542", "CL:0000000"],  # CD4 T
    "CL:0000625": ["CL:0000625", T_CELL, "CL:0000542", "CL:0000000"],  # CD8 T
    "CL:0000236": ["CL:0000236", "CL:0000542", "CL:0000000"],  # B cell
    "CL:0000235": ["CL:0000235", "CL:0000000"],  # macrophage
}
TISSUES = {"UBERON:0002048": ["UBERON:0002048"], "UBERON:0000178": ["UBERON:0000178"]}
DISEASES = {"PATO:0000461": ["PATO:0000461"], "MONDO:0005068": ["MONDO:0005068"]}

BACKENDS = ["edge", "qdrant-local"]


def make_atlas(n_per_type: int = 30, seed: int = 0) -> list[CellRecord]:
    """Clustered cells: one centre per cell type, three studies, two datasets per study."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(CELL_TYPES), 128))
    records = []
    i = 0
    for t, (ct, anc) in enumerate(CELL_TYPES.items()):
        for j in range(n_per_type):
            study = f"study{j % 3}"
            dataset = f"{study}-d{j % 2}"
            tissue = list(TISSUES)[j % 2]
            disease = list(DISEASES)[(j // 2) % 2]
            vec = centres[t] + 0.35 * rng.normal(size=128)
            payload = {
                "study_id": study,
                "donor_id": f"donor{j % 5}",
                "sample_id": f"sample{j % 7}",
                "cell_type_id": ct,
                "cell_type_ancestors": anc,
                "tissue_id": tissue,
                "tissue_ancestors": TISSUES[tissue],
                "disease_id": disease,
                "disease_ancestors": DISEASES[disease],
                "assay": "EFO:0009922",
                "model_version": "test-1",
            }
            records.append(CellRecord(dataset, f"cell{i:04d}", vec.astype(np.float32), payload))
            i += 1
    return records


@pytest.fixture(scope="session")
def atlas_factory():
    """``make_atlas`` itself, for tests that need a differently sized or seeded atlas."""
    return make_atlas


@pytest.fixture(scope="session")
def atlas() -> list[CellRecord]:
    return make_atlas()


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def fast_tmp() -> Iterator[Path]:
    """A temp folder on tmpfs when there is one: the engine syncs every payload index and
    WAL write to disk, which on a shared disk costs seconds per store; tmpfs makes it free."""
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(prefix="cellsearch-vs-", dir=base) as tmp:
        yield Path(tmp)


@pytest.fixture
def open_backend(fast_tmp: Path, backend: str):
    """Open a store of the parametrised backend in a temp folder (closed after the test)."""
    opened: list[CellStore] = []

    def _open(config: StoreConfig | None = None, path: Path | None = None) -> CellStore:
        store = open_store(path=path or fast_tmp / "store", config=config, engine=backend)
        opened.append(store)
        return store

    yield _open
    for store in opened:
        with contextlib.suppress(Exception):  # some tests close it themselves
            store.close()


@pytest.fixture
def store(open_backend, atlas: list[CellRecord]) -> Iterator[CellStore]:
    """A fresh store of the parametrised backend holding the atlas: for tests that change it."""
    s = open_backend()
    s.upsert(atlas)
    yield s


@pytest.fixture(scope="module")
def shared_store(backend: str, atlas: list[CellRecord]) -> Iterator[CellStore]:
    """One store per backend and module holding the atlas: for read-only tests (opening a
    store creates 13 payload indexes, each synced to disk, so reuse keeps the suite fast)."""
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(prefix="cellsearch-vs-", dir=base) as tmp:
        s = open_store(path=Path(tmp), engine=backend)
        s.upsert(atlas)
        yield s
        s.close()
