"""cellsearch: find similar human cells across a single-cell atlas.

Two doors, one set of methods::

    from cellsearch import Atlas             # in-process: an atlas in a folder, no server
    from cellsearch import CellSearchClient  # remote: the same calls over gRPC

Both are imported on first use, so ``import cellsearch`` stays light (the client-only
install has neither torch nor Qdrant, and never imports ``Atlas``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Atlas", "CellSearchClient", "__version__"]

if TYPE_CHECKING:
    from cellsearch.atlas import Atlas
    from cellsearch.client import CellSearchClient


def __getattr__(name: str) -> Any:
    if name == "Atlas":
        from cellsearch.atlas import Atlas

        return Atlas
    if name == "CellSearchClient":
        from cellsearch.client import CellSearchClient

        return CellSearchClient
    msg = f"module 'cellsearch' has no attribute {name!r}"
    raise AttributeError(msg)
