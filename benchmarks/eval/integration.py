"""scib-metrics on every embedding of a split: bio conservation, batch correction, total.

Scored on one random subsample of the split (the same cells for every method) because kBET and
LISI grow quickly with cells. Labels are the true leaf types, batches the studies. Neighbours are
exact (scikit-learn brute force) instead of pynndescent: at a few thousand cells exact search is
as fast and leaves no approximation in the comparison. A single-study split gets bio metrics only.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.eval import metrics
from benchmarks.eval.config import EvalConfig
from benchmarks.eval.datasets import STUDY, TRUTH, Split


def _exact_neighbours(X: np.ndarray, k: int):
    from scib_metrics.nearest_neighbors import NeighborsResults
    from sklearn.neighbors import NearestNeighbors

    dist, idx = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(X).kneighbors(X)
    return NeighborsResults(indices=idx, distances=dist)


def _patch_diffusion_neighbours() -> None:
    """Make kBET's diffusion-map neighbours exact too (scib-metrics calls pynndescent there).

    pynndescent's numba compilation costs minutes of a shared CPU in every fresh process; at the
    few hundred cells of one label's subset, exact search is instant and drops an approximation.
    """
    from scib_metrics.utils import _diffusion_nn

    class _Exact:
        @staticmethod
        def pynndescent(X: np.ndarray, n_neighbors: int, **_: object):
            return _exact_neighbours(X, min(n_neighbors, len(X)))

    _diffusion_nn.nearest_neighbors = _Exact  # type: ignore[assignment]


def _enable_jax_cache() -> None:
    """Persist jax's compiled kernels so a second run skips minutes of compilation."""
    import jax

    cache = Path.home() / ".cache" / "cellsearch" / "jax"
    cache.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(cache))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def subsample(n_total: int, n: int, seed: int) -> np.ndarray:
    """Sorted row indices of a uniform random subsample (all rows when ``n >= n_total``)."""
    if n >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).choice(n_total, size=n, replace=False))


def integration_scores(
    split: Split, embeddings: dict[str, np.ndarray], cfg: EvalConfig, baseline: str = "pca"
) -> pd.DataFrame:
    """One row per method: every scib metric, ``Bio conservation``, ``Batch correction``, ``Total``.

    ``Total`` is recomputed as 0.6 bio + 0.4 batch (:func:`metrics.integration_total`), and is
    NaN when the split has a single batch.
    """
    import anndata as ad
    from scib_metrics.benchmark import BatchCorrection, Benchmarker, BioConservation

    _patch_diffusion_neighbours()
    _enable_jax_cache()
    rows = subsample(len(split.obs), cfg.integration_cells, cfg.seed)
    obs = split.obs.iloc[rows][[TRUTH, STUDY]].astype("category").reset_index(drop=True)
    adata = ad.AnnData(X=np.zeros((len(rows), 1), dtype=np.float32), obs=obs)
    for name, X in embeddings.items():
        adata.obsm[name] = np.asarray(X[rows], dtype=np.float32)
    multi = split.n_batches > 1
    has_baseline = baseline in embeddings
    bench = Benchmarker(
        adata,
        batch_key=STUDY,
        label_key=TRUTH,
        embedding_obsm_keys=list(embeddings),
        bio_conservation_metrics=BioConservation(),
        # PCR comparison needs the unintegrated baseline (PCA); without it, it is left out.
        batch_correction_metrics=BatchCorrection(pcr_comparison=has_baseline) if multi else None,
        pre_integrated_embedding_obsm_key=baseline if has_baseline else next(iter(embeddings)),
        n_jobs=1,
        progress_bar=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bench.prepare(neighbor_computer=_exact_neighbours)
        bench.benchmark()
        table = bench.get_results(min_max_scale=False)
    table = table.drop(index="Metric Type", errors="ignore").apply(pd.to_numeric, errors="coerce")
    if multi:
        table["Total"] = [
            metrics.integration_total(b, c)
            for b, c in zip(table["Bio conservation"], table["Batch correction"], strict=True)
        ]
    else:
        table["Batch correction"] = np.nan
        table["Total"] = np.nan
    table.index.name = "method"
    return table
