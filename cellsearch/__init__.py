"""cellsearch: find similar human cells across a single-cell atlas.

The top-level package holds what every layer above the core shares: the typed
``Settings`` (the only reader of the environment), the generated gRPC stubs
(``cellsearch.v1``, built by ``make stubs``) and the ``cellsearch`` CLI.
"""

from __future__ import annotations

__version__ = "0.1.0"
