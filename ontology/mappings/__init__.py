"""Committed label mappings (author value -> ontology id) for bundled datasets.

Each is a TSV read by ``ontology.map_labels(values, kind, mapping=PATH)``.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent

#: scanpy's ``pbmc68k_reduced`` ``obs["bulk_labels"]`` -> CL ids (kind ``cell_type``).
PBMC68K_BULK_LABELS: Path = _HERE / "pbmc68k_reduced_bulk_labels.tsv"

__all__ = ["PBMC68K_BULK_LABELS"]
