"""The report's PNGs: UMAPs per method, confidence histograms, latency against selectivity.

Matplotlib with the Agg backend only (no display here). UMAPs use one subsample of cells shared
by every method so the panels are comparable cell for cell.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from benchmarks.eval.tasks import Scores


def _palette(n: int) -> list:
    cmaps = [plt.get_cmap("tab20"), plt.get_cmap("tab20b"), plt.get_cmap("tab20c")]
    colours = [c for cmap in cmaps for c in cmap.colors]
    return [colours[i % len(colours)] for i in range(n)]


def umap_coords(X: np.ndarray, seed: int) -> np.ndarray:
    """2-D UMAP of ``X`` (15 neighbours, umap-learn defaults)."""
    import umap

    reducer = umap.UMAP(n_neighbors=15, min_dist=0.3, random_state=seed, n_jobs=1)
    return reducer.fit_transform(X)


def umap_grid(
    coords: Mapping[str, np.ndarray],
    colourings: Mapping[str, Sequence[str]],
    path: Path,
    title: str,
    label_names: Mapping[str, str] | None = None,
) -> Path:
    """One row per method, one column per colouring (e.g. cell type, study)."""
    methods = list(coords)
    cols = list(colourings)
    fig, axes = plt.subplots(
        len(methods), len(cols), figsize=(5.2 * len(cols) + 3.5, 4.2 * len(methods)), squeeze=False
    )
    for j, col in enumerate(cols):
        values = np.asarray(colourings[col], dtype=object)
        cats = sorted(set(values.tolist()))
        colours = dict(zip(cats, _palette(len(cats)), strict=True))
        for i, method in enumerate(methods):
            ax = axes[i, j]
            xy = coords[method]
            for cat in cats:
                m = values == cat
                ax.scatter(xy[m, 0], xy[m, 1], s=2, color=colours[cat], rasterized=True)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{method} — {col}", fontsize=10)
        handles = [
            plt.Line2D([], [], marker="o", ls="", color=colours[c], label=_name(c, label_names))
            for c in cats
        ]
        axes[0, j].legend(
            handles=handles, fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False
        )
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _name(term: str, names: Mapping[str, str] | None) -> str:
    return f"{names[term]}" if names and term in names else term


def confidence_histograms(scores: Sequence[Scores], n_in: int, path: Path, title: str) -> Path:
    """Per method: query cells' distance to the reference, in-distribution vs absent types."""
    fig, axes = plt.subplots(1, len(scores), figsize=(3.6 * len(scores), 3.2), squeeze=False)
    for ax, sc in zip(axes[0], scores, strict=True):
        d = sc.query_distance
        if d is None:
            ax.set_visible(False)
            continue
        bins = np.linspace(np.nanmin(d), np.nanmax(d), 40)
        ax.hist(d[:n_in], bins=bins, alpha=0.6, density=True, label="held-out, known type")
        if len(d) > n_in:
            ax.hist(d[n_in:], bins=bins, alpha=0.6, density=True, label="type absent from ref")
        ax.axvline(sc.threshold, color="k", ls="--", lw=1, label="unknown threshold")
        xlabel = "1 - max probability" if sc.method == "celltypist" else "mean kNN distance"
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_title(sc.method, fontsize=10)
        ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=6)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def latency_vs_selectivity(
    series: Mapping[str, Sequence[tuple[float, float]]], path: Path, title: str
) -> Path:
    """Latency (ms) against filter selectivity (share of points passing), one line per series."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, points in series.items():
        pts = sorted(points)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("selectivity (share of points passing the filter)")
    ax.set_ylabel("median latency (ms)")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
