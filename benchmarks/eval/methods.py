"""Each method's embedding of every cell of a split, timed, on the same rows.

Protocols differ by nature and the report says so: cellsearch is *inductive* (its encoder is
trained on the reference studies only, then embeds the held-out studies it never saw), while
PCA, Harmony, scVI and scanorama are *transductive* integration methods fitted on reference and
query together with the study as batch, which is how they are used and benchmarked (scib).
That gives the peers the query's batches during fitting, an advantage cellsearch does not get.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from benchmarks.eval.config import EvalConfig
from benchmarks.eval.datasets import STUDY, Split
from benchmarks.eval.encoder_fit import embed_split


@dataclass
class Embedding:
    """One method's coordinates for every row of a split (or why it has none)."""

    method: str
    X: np.ndarray | None
    seconds: float
    protocol: str
    note: str = ""
    extra: dict[str, object] = field(default_factory=dict)


class NotApplicableError(RuntimeError):
    """The method cannot run on this split (no counts, one batch); the report says why."""


def _pca(split: Split, cfg: EvalConfig) -> np.ndarray:
    from sklearn.decomposition import TruncatedSVD

    x = split.lognorm.toarray()
    x -= x.mean(axis=0, keepdims=True)
    sd = x.std(axis=0, keepdims=True)
    x /= np.where(sd > 0, sd, 1.0)
    np.clip(x, -10, 10, out=x)  # scanpy's pp.scale(max_value=10), the scib preprocessing
    n = min(cfg.n_pcs, x.shape[1] - 1, x.shape[0] - 1)
    return TruncatedSVD(n_components=n, random_state=cfg.seed).fit_transform(x).astype(np.float32)


def _pca_inductive(split: Split, cfg: EvalConfig) -> np.ndarray:
    """PCA fitted on the reference cells only, the query projected onto its axes."""
    from sklearn.decomposition import TruncatedSVD

    x = split.lognorm.toarray()
    ref = split.is_ref
    x -= x[ref].mean(axis=0, keepdims=True)
    sd = x[ref].std(axis=0, keepdims=True)
    x /= np.where(sd > 0, sd, 1.0)
    np.clip(x, -10, 10, out=x)
    n = min(cfg.n_pcs, x.shape[1] - 1, int(ref.sum()) - 1)
    svd = TruncatedSVD(n_components=n, random_state=cfg.seed).fit(x[ref])
    return svd.transform(x).astype(np.float32)


def _needs_batches(split: Split, method: str) -> None:
    if split.n_batches < 2:
        msg = f"{method} integrates batches and {split.name} has a single study"
        raise NotApplicableError(msg)


def _harmony(split: Split, cfg: EvalConfig) -> np.ndarray:
    _needs_batches(split, "Harmony")
    import harmonypy

    pcs = _pca(split, cfg)
    meta = split.obs[[STUDY]].reset_index(drop=True)
    out = harmonypy.run_harmony(pcs, meta, [STUDY], random_state=cfg.seed, verbose=False)
    z = np.asarray(out.Z_corr)
    # harmonypy has returned (d, n) and (n, d) across versions: take the cells axis explicitly
    return (z if z.shape[0] == len(pcs) else z.T).astype(np.float32)


def _scanorama(split: Split, cfg: EvalConfig) -> np.ndarray:
    _needs_batches(split, "scanorama")
    import scanorama

    studies = split.obs[STUDY].to_numpy()
    order = sorted(set(studies))
    datasets = [split.lognorm[studies == s] for s in order]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        integrated, _ = scanorama.integrate(
            datasets, [list(split.genes)] * len(order), dimred=cfg.n_pcs, verbose=0, seed=cfg.seed
        )
    out = np.zeros((len(studies), integrated[0].shape[1]), dtype=np.float32)
    for s, emb in zip(order, integrated, strict=True):
        out[studies == s] = emb
    return out


def _scvi(split: Split, cfg: EvalConfig) -> np.ndarray:
    if split.counts is None:
        msg = f"scVI models raw counts and {split.name} has only log-normalised values"
        raise NotApplicableError(msg)
    import anndata as ad
    import scvi

    scvi.settings.seed = cfg.seed
    scvi.settings.dl_num_workers = 0
    adata = ad.AnnData(
        X=sp.csr_matrix(split.counts), obs=split.obs[[STUDY]].astype("category").copy()
    )
    scvi.model.SCVI.setup_anndata(adata, batch_key=STUDY)
    model = scvi.model.SCVI(adata, n_latent=30, n_layers=2, gene_likelihood="nb")
    model.train(
        max_epochs=cfg.scvi_epochs,
        accelerator="cpu",
        enable_progress_bar=False,
        early_stopping=False,
    )
    return np.asarray(model.get_latent_representation(), dtype=np.float32)


def _scvi_inductive(split: Split, cfg: EvalConfig) -> np.ndarray:
    """scVI on the reference studies, then scArches query mapping (``load_query_data``).

    The reference model never sees the query; the query model starts from its weights,
    learns only the new studies' batch parameters, and embeds the query cells.
    """
    if split.counts is None:
        msg = f"scVI models raw counts and {split.name} has only log-normalised values"
        raise NotApplicableError(msg)
    import anndata as ad
    import scvi

    scvi.settings.seed = cfg.seed
    scvi.settings.dl_num_workers = 0
    obs = split.obs[[STUDY]].astype(str)
    ref, query = split.is_ref, split.is_query
    counts = sp.csr_matrix(split.counts)
    ref_data = ad.AnnData(X=counts[ref], obs=obs[ref].astype("category"))
    ref_data.var_names = list(split.genes)
    scvi.model.SCVI.setup_anndata(ref_data, batch_key=STUDY)
    model = scvi.model.SCVI(ref_data, n_latent=30, n_layers=2, gene_likelihood="nb")
    fit = {"accelerator": "cpu", "enable_progress_bar": False, "early_stopping": False}
    model.train(max_epochs=cfg.scvi_epochs, **fit)
    query_data = ad.AnnData(X=counts[query], obs=obs[query].astype("category"))
    query_data.var_names = list(split.genes)
    scvi.model.SCVI.prepare_query_anndata(query_data, model)
    query_model = scvi.model.SCVI.load_query_data(query_data, model)
    query_model.train(max_epochs=cfg.scvi_epochs, plan_kwargs={"weight_decay": 0.0}, **fit)
    out = np.zeros((len(split.obs), 30), dtype=np.float32)
    out[ref] = model.get_latent_representation()
    out[query] = query_model.get_latent_representation()
    return out


def _cellsearch(split: Split, cfg: EvalConfig, encoder: object) -> np.ndarray:
    """The encoder trained on reference cells only (see ``encoder_fit``)."""
    if encoder is None:
        msg = "cellsearch needs the reference-trained encoder (encoder_fit.train_reference_encoder)"
        raise ValueError(msg)
    return embed_split(encoder, split)


_PROTOCOLS = {
    "cellsearch": "inductive: encoder trained on reference cells only, embeds the query",
    "pca": "transductive: fitted on reference + query",
    "pca-inductive": "inductive: PCA fitted on the reference, the query projected",
    "scvi-inductive": "inductive: scVI on the reference, scArches query mapping",
    "harmony": "transductive: PCA + Harmony over studies, reference + query",
    "scvi": "transductive: scVI over studies on raw counts, reference + query",
    "scanorama": "transductive: scanorama over studies, reference + query",
}

_EMBEDDERS: dict[str, Callable[[Split, EvalConfig], np.ndarray]] = {
    "pca": _pca,
    "pca-inductive": _pca_inductive,
    "scvi-inductive": _scvi_inductive,
    "harmony": _harmony,
    "scvi": _scvi,
    "scanorama": _scanorama,
}


def embed(
    method: str,
    split: Split,
    cfg: EvalConfig,
    log: Callable[[str], None],
    encoder: object = None,
) -> Embedding:
    """Run one method on one split; a method that cannot run returns ``X=None`` and a note."""
    if method not in (*_EMBEDDERS, "cellsearch"):
        msg = f"unknown method {method!r}; known: cellsearch, {', '.join(sorted(_EMBEDDERS))}"
        raise ValueError(msg)
    started = time.perf_counter()
    try:
        if method == "cellsearch":
            result = _cellsearch(split, cfg, encoder)
        else:
            result = _EMBEDDERS[method](split, cfg)
    except NotApplicableError as exc:
        log(f"  {method}: not applicable ({exc})")
        return Embedding(method, None, 0.0, _PROTOCOLS[method], note=f"n/a: {exc}")
    seconds = time.perf_counter() - started
    X = np.asarray(result, dtype=np.float32)
    if X.shape[0] != len(split.obs):
        msg = f"{method} returned {X.shape[0]} rows for {len(split.obs)} cells"
        raise RuntimeError(msg)
    log(f"  {method}: {X.shape[1]}-d in {seconds:.1f} s")
    return Embedding(method, X, seconds, _PROTOCOLS[method])
