"""The one place that speaks Qdrant: a small store interface and its backends.

``open_store(path=...)`` opens the embedded engine (qdrant-edge, the default, no server);
``open_store(url=...)`` talks to a Qdrant server over gRPC; ``open_store(path=...,
engine="qdrant-local")`` gives qdrant-client's brute-force local mode (tests only).
Everything else in the code base uses :class:`CellStore` and the types below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from vectorstore.base import CellRef, CellStore, StoreLockedError
from vectorstore.config import StoreConfig
from vectorstore.types import (
    DIM,
    LIST_FIELDS,
    PAYLOAD_FIELDS,
    SCALAR_FIELDS,
    CellRecord,
    Hit,
    SearchFilter,
    point_id,
)

Engine = Literal["edge", "qdrant-local"]

__all__ = [
    "DIM",
    "LIST_FIELDS",
    "PAYLOAD_FIELDS",
    "SCALAR_FIELDS",
    "CellRecord",
    "CellRef",
    "CellStore",
    "Hit",
    "SearchFilter",
    "StoreConfig",
    "StoreLockedError",
    "open_store",
    "point_id",
]


def open_store(
    *,
    path: Path | None = None,
    url: str | None = None,
    api_key: str | None = None,
    collection: str = "cells",
    config: StoreConfig | None = None,
    engine: Engine = "edge",
) -> CellStore:
    """Open (creating when absent) the cell collection.

    ``path``: a folder; the embedded shard lives in ``path / collection``. ``url``: a Qdrant
    server (``http://host:6334``), reached over gRPC. Exactly one of them. An existing
    collection keeps the schema it was created with; ``config`` then only sets query-time
    knobs (ef, rescoring).
    """
    if (path is None) == (url is None):
        msg = "open_store needs exactly one of path= (embedded engine) or url= (Qdrant server)"
        raise ValueError(msg)
    if url is not None:
        from vectorstore.server import QdrantServerStore

        return QdrantServerStore(url=url, api_key=api_key, collection=collection, config=config)
    assert path is not None
    if engine == "qdrant-local":
        from vectorstore.server import QdrantServerStore

        return QdrantServerStore(local_path=Path(path), collection=collection, config=config)
    if engine != "edge":
        msg = f"unknown engine {engine!r}; use 'edge' (default) or 'qdrant-local'"
        raise ValueError(msg)
    from vectorstore.edge import EdgeStore

    return EdgeStore(Path(path) / collection, config)
