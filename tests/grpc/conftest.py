"""A real server on port 0 over a real embedded store seeded with a small labelled atlas.

The atlas: four cell types (macrophage, alveolar macrophage, T cell, B cell) in three
studies (lung with interstitial lung disease, normal lung, normal blood), each type a
tight cluster around its own random direction, so the right answers are known.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from grpc_atlas import CELLS_PER_TYPE, STUDIES, TOKEN, atlas_records, type_centers
from pydantic import SecretStr


@dataclass
class Env:
    """What a test needs to talk to, and to check against, the running server."""

    port: int
    address: str
    settings: object
    store: object
    jobs: object
    inbox: Path
    submitted: list[str] = field(default_factory=list)

    def client(self, token: str | None = TOKEN, **kw):
        from cellsearch.client import CellSearchClient

        return CellSearchClient(self.address, token=token, timeout=20, **kw)


JOBS_REDIS_URL = os.environ.get("CELLSEARCH_TEST_GRPC_REDIS_URL", "redis://127.0.0.1:6379/14")


@pytest.fixture(scope="session")
def server_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """One real server (auth on, small limits) for the whole folder: opening the embedded
    store takes seconds. Job records live in Redis database 14 (flushed before and after),
    so the per-test flush of database 15 by other fixtures never touches them. Tests that
    change the atlas add and remove their own datasets."""
    import redis

    from cellsearch.platform.jobs import DatasetEntry, RedisJobStore
    from cellsearch.platform.settings import Settings
    from services.search.server import build_server
    from vectorstore import open_store

    root = tmp_path_factory.mktemp("grpc")
    inbox = root / "inbox"
    inbox.mkdir()
    settings = Settings(
        store_path=root / "store",
        redis_url=JOBS_REDIS_URL,
        grpc_address="127.0.0.1:0",
        allowed_roots=(inbox,),
        ontology_cache_dir=root / "ontology-cache",
        auth_token=SecretStr(TOKEN),
        max_k=100,
        max_query_cells=50,
        grpc_workers=8,
    )
    flush = redis.Redis.from_url(JOBS_REDIS_URL)
    try:
        flush.flushdb()
    except redis.ConnectionError as exc:  # pragma: no cover - environment problem
        pytest.fail(f"Redis does not answer at {JOBS_REDIS_URL}: {exc}; start redis-server")
    store = open_store(path=settings.store_path)
    store.upsert(atlas_records())
    jobs = RedisJobStore(JOBS_REDIS_URL)
    for study in STUDIES:
        jobs.register_dataset(
            DatasetEntry(
                dataset_id=f"{study}/d1",
                study_id=study,
                path=f"/data/{study}.h5ad",
                n_cells=CELLS_PER_TYPE * len(STUDIES[study][2]),
                genes_matched=100,
                genes_total=120,
                model_version="test-model",
                job_id="seed",
            )
        )
    submitted: list[str] = []
    server, port = build_server(settings, store=store, jobs=jobs, submit=submitted.append)
    yield Env(
        port=port,
        address=f"127.0.0.1:{port}",
        settings=settings,
        store=store,
        jobs=jobs,
        inbox=inbox,
        submitted=submitted,
    )
    server.stop(grace=None).wait()
    store.close()
    flush.flushdb()
    flush.close()


@pytest.fixture(scope="session")
def centers() -> dict[str, np.ndarray]:
    """The direction each seeded cell type clusters around."""
    return type_centers()


@pytest.fixture
def atlas_free_store(tmp_path: Path) -> Iterator[object]:
    """An empty embedded store of a test's own (for servers with special settings)."""
    from vectorstore import open_store

    store = open_store(path=tmp_path / "own-store")
    yield store
    store.close()
