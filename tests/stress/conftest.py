"""The stress suite reuses the pipeline tests' small encoder and file writer (workers_testkit)."""

from __future__ import annotations

import sys
from pathlib import Path

_TESTKIT = str(Path(__file__).resolve().parents[1] / "workers")
if _TESTKIT not in sys.path:
    sys.path.append(_TESTKIT)
