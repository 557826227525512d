"""Markdown tables and the REPORT.md text, from the numbers a run computed.

Formatting only: nothing here computes a score. ``losses`` lists, metric by metric, where
cellsearch is beaten and by whom, so the report states it in so many words.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd

# Headline columns: (column title, higher is better)
HEADLINE_COLUMNS: tuple[tuple[str, bool], ...] = (
    ("kNN accuracy", True),
    ("macro-F1", True),
    ("ontology score", True),
    ("precision@10", True),
    ("scib bio", True),
    ("scib batch", True),
    ("scib total", True),
    ("known type confident", True),
    ("absent type flagged", True),
    ("unknown AUROC", True),
)


def fmt(value: object, digits: int = 3) -> str:
    """A table cell: floats rounded, NaN/None as an em dash."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def table(frame: pd.DataFrame, index_name: str | None = None, digits: int = 3) -> str:
    """A pandas frame as a GitHub markdown table (index as the first column)."""
    head = [index_name or frame.index.name or ""] + [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for idx, row in frame.iterrows():
        cells = [str(idx)] + [fmt(v, digits) for v in row.tolist()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def records_table(rows: Sequence[Mapping[str, object]], digits: int = 3) -> str:
    """A list of dicts (same keys) as a markdown table."""
    if not rows:
        return "_(none)_"
    frame = pd.DataFrame(rows)
    frame = frame.set_index(frame.columns[0])
    return table(frame, digits=digits)


def losses(headline: pd.DataFrame, ours: str = "cellsearch") -> list[str]:
    """One sentence per headline metric where another method beats ``ours``."""
    if ours not in headline.index:
        return [f"{ours} has no row: it did not run"]
    out = []
    for col, higher in HEADLINE_COLUMNS:
        if col not in headline.columns:
            continue
        values = pd.to_numeric(headline[col], errors="coerce").dropna()
        if ours not in values.index or len(values) < 2:
            continue
        mine = values[ours]
        others = values.drop(ours)
        best = others.idxmax() if higher else others.idxmin()
        beaten = others[best] > mine if higher else others[best] < mine
        if beaten:
            out.append(
                f"**{col}**: {best} {others[best]:.3f} vs cellsearch {mine:.3f} "
                f"(Δ {mine - others[best]:+.3f})"
            )
    return out


def wins(headline: pd.DataFrame, ours: str = "cellsearch") -> list[str]:
    """Headline metrics where ``ours`` is best (ties included)."""
    out = []
    for col, higher in HEADLINE_COLUMNS:
        if col not in headline.columns:
            continue
        values = pd.to_numeric(headline[col], errors="coerce").dropna()
        if ours not in values.index or len(values) < 2:
            continue
        best = values.max() if higher else values.min()
        if values[ours] == best:
            out.append(f"{col} ({values[ours]:.3f})")
    return out
