"""The training loop: one readable function, nanoGPT style.

AdamW with a warm-up + cosine schedule; each step draws a type/study-balanced
batch, mines triplets in-batch on the unit embeddings and adds the decoder's
MSE reconstruction. After each epoch the encoder annotates held-out *studies*
by kNN against the training cells (macro-F1), which drives early stopping and
the choice of the best weights. Everything random is seeded; a checkpoint
folder can be given to resume an interrupted run.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from encoder.augment import augment_batch
from encoder.checkpoint import Checkpoint, save_checkpoint
from encoder.config import RECIPE_HIDDEN_DIMS, EncoderConfig, TrainConfig, resolve_device
from encoder.data import DEFAULT_MIN_OVERLAP, GeneAligner, log_normalize, to_csr
from encoder.losses import (
    LabelProxies,
    l1_penalty,
    mine_triplets,
    reconstruction_loss,
    triplet_loss,
)
from encoder.metrics import accuracy, credit_refinements, knn_predict, macro_f1
from encoder.module import AutoEncoder
from encoder.sampler import BalancedBatchSampler

TRAIN_STATE = "train_state.pt"
UNLABELLED = frozenset({"", "unknown", "nan", "None"})
BEST_MODEL = "best"
MAX_REFERENCE_CELLS = 20_000
#: Without ``steps_per_epoch`` an epoch is one pass over the training cells, kept between these
#: bounds: the held-out studies are scored (and the best weights chosen) at least this often on
#: large references, and small ones still take enough steps per score to move.
MIN_STEPS_PER_EPOCH = 20
MAX_STEPS_PER_EPOCH = 200


@dataclass
class TrainingData:
    """Log-normalised cells in model gene order, with integer type and study codes.

    ``tissues``: each cell's tissue code into ``tissue_vocab`` ("" where the reference does not
    say), which narrows what a coarse label may stand for (:func:`label_contexts`).
    """

    x: sp.csr_matrix
    labels: np.ndarray
    studies: np.ndarray
    label_vocab: list[str]
    study_vocab: list[str]
    genes: list[str]
    tissues: np.ndarray | None = None
    tissue_vocab: list[str] | None = None


def _collect(data: Any) -> tuple[sp.csr_matrix, pd.DataFrame, list[str]]:
    """AnnData or an iterable of CellChunk -> (raw counts CSR, obs, gene names)."""
    if hasattr(data, "obs") and hasattr(data, "var_names"):
        return to_csr(data.X), data.obs, list(data.var_names)
    xs, obs, names = [], [], None
    for chunk in data:
        if names is None:
            names = list(chunk.var_names)
        elif list(chunk.var_names) != names:
            msg = "all training chunks must share the same var_names"
            raise ValueError(msg)
        xs.append(to_csr(chunk.X))
        obs.append(chunk.obs)
    if not xs or names is None:
        msg = "no training cells: the data iterable was empty"
        raise ValueError(msg)
    return sp.vstack(xs, format="csr"), pd.concat(obs), names


def prepare_training_data(
    data: Any,
    *,
    genes: Sequence[str] | None,
    label_key: str,
    study_key: str,
    target_sum: float,
    min_overlap: float = DEFAULT_MIN_OVERLAP,
    tissue_key: str | None = None,
) -> TrainingData:
    """Align to ``genes`` (default: the data's own), log-normalise, encode labels/studies
    (and tissues, when ``tissue_key`` names an obs column)."""
    x, obs, names = _collect(data)
    for key in (label_key, study_key):
        if key not in obs.columns:
            msg = f"obs has no column {key!r} (columns: {list(obs.columns)[:12]})"
            raise KeyError(msg)
    # CELLxGENE's "unknown" (and empty labels) say nothing about type: such cells cannot be
    # anchors, positives or negatives, so they are left out of training.
    labelled = ~obs[label_key].astype(str).isin(UNLABELLED).to_numpy()
    if not labelled.all():
        if not labelled.any():
            msg = f"no cell has a {label_key!r} to train on (all are {sorted(UNLABELLED)})"
            raise ValueError(msg)
        x, obs = x[labelled], obs[labelled]
    model_genes = list(genes) if genes is not None else names
    x = GeneAligner(model_genes, names, min_overlap=min_overlap).apply(x)
    label_vocab, labels = np.unique(obs[label_key].astype(str).to_numpy(), return_inverse=True)
    study_vocab, studies = np.unique(obs[study_key].astype(str).to_numpy(), return_inverse=True)
    tissues = tissue_vocab = None
    if tissue_key and tissue_key in obs.columns:
        said = obs[tissue_key].astype(object).where(obs[tissue_key].notna(), "")
        tissue_vocab, tissues = np.unique(said.astype(str).to_numpy(), return_inverse=True)
    return TrainingData(
        x=log_normalize(x, target_sum),
        labels=labels.astype(np.int64),
        studies=studies.astype(np.int64),
        label_vocab=[str(v) for v in label_vocab],
        study_vocab=[str(v) for v in study_vocab],
        genes=model_genes,
        tissues=None if tissues is None else tissues.astype(np.int64),
        tissue_vocab=None if tissue_vocab is None else [str(v) for v in tissue_vocab],
    )


def _term_ancestors(label_vocab: Sequence[str]) -> list[frozenset[str] | None]:
    """Each label's ontology ancestors, itself included; None for a label that is not a term
    (free text, or a term this ontology release lacks)."""
    import ontology

    out: list[frozenset[str] | None] = []
    for term in label_vocab:
        try:
            out.append(ontology.ancestors(term))
        except Exception:
            out.append(None)
    return out


def label_descends(label_vocab: Sequence[str]) -> np.ndarray:
    """``[i, j]`` True when label ``j`` is label ``i`` or one of its ontology descendants.

    Labels that are not ontology terms (free text) only descend from themselves, and a
    warning says which; the other labels keep their ontology relations.
    """
    out = np.eye(len(label_vocab), dtype=bool)
    position = {term: i for i, term in enumerate(label_vocab)}
    not_terms = []
    for j, (term, ancestors) in enumerate(
        zip(label_vocab, _term_ancestors(label_vocab), strict=True)
    ):
        if ancestors is None:
            not_terms.append(term)
            continue
        for ancestor in ancestors:
            i = position.get(ancestor)
            if i is not None:
                out[i, j] = True
    if not_terms:
        warnings.warn(
            f"{len(not_terms)} label(s) are not ontology terms (e.g. {not_terms[:3]}); "
            "they are related only to themselves",
            stacklevel=2,
        )
    return out


def label_contexts(td: TrainingData, descends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(context of each cell, compatible[context, label])`` for the proxy loss.

    A coarse label says the cell is *some* descendant type, but not any descendant the
    ontology allows: a kidney study's "epithelial cell" is not a pulmonary alveolar type 2
    cell, whatever the ontology permits. A context is a (label, tissue) pair, and its cells may
    sit at their own label's proxy or at a descendant's that some reference cell of the *same
    tissue* carries. Hematopoietic labels are exempt (blood cells circulate: a lung study's
    "monocyte" may well be the CD14 monocyte only blood studies name), and cells whose tissue
    is not given keep every descendant. Measured on the simulated atlas: without this, kidney
    epithelial and fibroblast cells settled on the lung types' proxies and unseen studies'
    cells of those types were called lung types; without the exemption, blood queries were
    called by their coarse labels.
    """
    if td.tissues is None or td.tissue_vocab is None:
        return td.labels, descends
    circulating = _circulating(td.label_vocab)
    n_tissues = len(td.tissue_vocab)
    pair = td.labels * n_tissues + td.tissues
    pairs, context = np.unique(pair, return_inverse=True)
    in_tissue = np.zeros((n_tissues, len(td.label_vocab)), dtype=bool)
    in_tissue[td.tissues, td.labels] = True
    unsaid = np.asarray(td.tissue_vocab) == ""
    compatible = np.empty((len(pairs), len(td.label_vocab)), dtype=bool)
    for i, p in enumerate(pairs.tolist()):
        label, tissue = divmod(p, n_tissues)
        allowed = descends[label].copy()
        if not unsaid[tissue] and not circulating[label]:
            allowed &= in_tissue[tissue]
        allowed[label] = True
        compatible[i] = allowed
    return context.astype(np.int64), compatible


#: Cell Ontology "hematopoietic cell": its descendants circulate, so a tissue says nothing
#: about which of them a coarse immune label stands for.
HEMATOPOIETIC_CELL = "CL:0000988"


def _circulating(label_vocab: Sequence[str]) -> np.ndarray:
    """Per label: is it a hematopoietic cell (or one of its kinds)?"""
    return np.array(
        [HEMATOPOIETIC_CELL in (anc or ()) for anc in _term_ancestors(label_vocab)], dtype=bool
    )


def related_types(label_vocab: Sequence[str]) -> np.ndarray:
    """Ontology relatedness of the label vocabulary: same label, ancestor or descendant."""
    descends = label_descends(label_vocab)
    related: np.ndarray = descends | descends.T
    return related


def split_studies(
    study_vocab: Sequence[str], config: TrainConfig, rng: np.random.Generator
) -> list[str]:
    """Held-out validation studies: the configured ones, else a seeded fraction."""
    if config.val_studies:
        unknown = sorted(set(config.val_studies) - set(study_vocab))
        if unknown:
            msg = f"val_studies {unknown} are not in the data's studies {list(study_vocab)[:10]}"
            raise ValueError(msg)
        return list(config.val_studies)
    if len(study_vocab) < 3 or config.val_fraction_studies <= 0:
        return []
    n_val = max(1, round(config.val_fraction_studies * len(study_vocab)))
    return sorted(rng.choice(list(study_vocab), size=n_val, replace=False).tolist())


@torch.no_grad()
def embed_dense(
    module: AutoEncoder, x: sp.csr_matrix, device: str, block: int = 2048
) -> np.ndarray:
    """Encoder outputs for log-normalised rows (training-time evaluation, dense batches)."""
    module.eval()
    out = [
        module.encoder(torch.from_numpy(x[s : s + block].toarray()).to(device)).float().cpu()
        for s in range(0, x.shape[0], block)
    ]
    return torch.cat(out).numpy() if out else np.zeros((0, module.config.latent_dim))


def evaluate(
    module: AutoEncoder,
    td: TrainingData,
    ref_idx: np.ndarray,
    query_idx: np.ndarray,
    *,
    k: int,
    device: str,
    descends: np.ndarray | None = None,
) -> dict[str, float]:
    """kNN annotation of the query cells against the reference cells.

    With ``descends`` (:func:`label_descends`), a prediction finer than the cell's own label
    and consistent with it counts as a match (:func:`encoder.metrics.credit_refinements`).
    """
    ref = embed_dense(module, td.x[ref_idx], device)
    query = embed_dense(module, td.x[query_idx], device)
    pred = knn_predict(ref, td.labels[ref_idx], query, k=k)
    truth = td.labels[query_idx]
    if descends is not None:
        pred = credit_refinements(truth, pred, descends)
    return {"val_macro_f1": macro_f1(truth, pred), "val_accuracy": accuracy(truth, pred)}


#: Nearest reference cells whose mean distance measures how far a cell sits from the reference
#: (the annotation service's ``rep_neighbours``).
HELD_OUT_NEIGHBOURS = 5


def held_out_distances(
    module: AutoEncoder,
    td: TrainingData,
    ref_idx: np.ndarray,
    val_idx: np.ndarray,
    device: str,
    n_quantiles: int = 201,
) -> dict[str, Any]:
    """How far cells of *unseen studies* sit from the training studies: quantiles of each
    held-out cell's mean cosine distance (1 - similarity) to its nearest training cells.

    The reference's own cross-study distances are smaller than a new study's, because the
    encoder was trained to pull exactly those studies together; the held-out studies were
    never trained on, so they are what a query study looks like. The annotation service
    calibrates its "unknown" flag on these when the model carries them.
    """
    ref = torch.from_numpy(embed_dense(module, td.x[ref_idx], device)).float()
    query = torch.from_numpy(embed_dense(module, td.x[val_idx], device)).float()
    k = min(HELD_OUT_NEIGHBOURS, len(ref_idx))
    means = [
        (1.0 - (query[s : s + 2048] @ ref.T).topk(k, dim=1).values).mean(dim=1)
        for s in range(0, len(query), 2048)
    ]
    values = torch.cat(means).numpy().astype(np.float64)
    quantiles = np.quantile(values, np.linspace(0.0, 1.0, n_quantiles)).round(6).tolist()
    return {"neighbours": k, "quantiles": quantiles}


class CosineSchedule:
    """Linear warm-up then cosine decay over ``total`` steps; ``total`` may shrink mid-run.

    A time budget is known in seconds, not steps: once the first epoch has been timed the
    loop shortens the plan (:meth:`replan`) so the learning rate still anneals to zero by the
    last epoch that fits, instead of being cut off at a high rate.
    """

    def __init__(self, total: int, warmup: int) -> None:
        self.total, self.warmup = int(total), int(warmup)

    def replan(self, total: int) -> None:
        self.total = max(1, int(total))

    def __call__(self, step: int) -> float:
        if self.warmup and step < self.warmup:
            return (step + 1) / self.warmup
        progress = (step - self.warmup) / max(1, self.total - self.warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def format_epoch(record: dict[str, float], planned: int) -> str:
    """One progress line: losses, then the held-out score that picks the best epoch."""
    line = (
        f"epoch {int(record['epoch'])}/{planned}  loss {record['loss']:.4f} "
        f"(triplet {record['triplet']:.4f}, reconstruction {record['recon']:.4f})"
    )
    if "val_macro_f1" in record:
        line += (
            f"  held-out macro-F1 {record['val_macro_f1']:.3f}"
            f" accuracy {record['val_accuracy']:.3f}"
        )
    return f"{line}  [{record['seconds']:.0f} s]"


def fit(
    data: Any,
    *,
    config: TrainConfig,
    **kwargs: Any,
) -> Checkpoint:
    """Train an encoder; see :func:`_fit` (this wrapper scopes deterministic mode)."""
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    if config.deterministic:
        # Multi-threaded CPU kernels (scatter/index backward) otherwise change the last bits
        # from run to run; on CUDA some ops lack deterministic versions, so only warn there.
        torch.use_deterministic_algorithms(mode=True, warn_only=True)
    try:
        return _fit(data, config=config, **kwargs)
    finally:
        torch.use_deterministic_algorithms(mode=previous, warn_only=previous_warn)


@dataclass
class _Run:
    """One optimisation run's moving parts: the held-out selection run, or the refit."""

    module: AutoEncoder
    proxies: LabelProxies | None
    optimizer: torch.optim.Optimizer
    schedule: CosineSchedule
    scheduler: torch.optim.lr_scheduler.LambdaLR
    sampler: BalancedBatchSampler
    pool: np.ndarray
    steps: int
    contexts: np.ndarray


def _new_run(
    cfg: EncoderConfig,
    config: TrainConfig,
    td: TrainingData,
    pool: np.ndarray,
    device: str,
    descends: np.ndarray,
) -> _Run:
    torch.manual_seed(config.seed)
    module = AutoEncoder(cfg).to(device)
    proxies = None
    contexts, compatible_np = label_contexts(td, descends)
    if config.proxy_weight:
        compatible = torch.from_numpy(compatible_np)
        proxies = LabelProxies(compatible, cfg.latent_dim, config.proxy_scale).to(device)
    params = list(module.parameters()) + ([] if proxies is None else list(proxies.parameters()))
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    steps = config.steps_per_epoch or int(
        np.clip(len(pool) // config.batch_size, MIN_STEPS_PER_EPOCH, MAX_STEPS_PER_EPOCH)
    )
    schedule = CosineSchedule(steps * config.epochs, config.warmup_steps)
    sampler = BalancedBatchSampler(
        td.labels[pool],
        td.studies[pool],
        batch_size=config.batch_size,
        cells_per_type=config.cells_per_type,
        seed=config.seed,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    return _Run(module, proxies, optimizer, schedule, scheduler, sampler, pool, steps, contexts)


def _train_epoch(
    run: _Run,
    td: TrainingData,
    config: TrainConfig,
    related: torch.Tensor,
    gen: torch.Generator,
    device: str,
    desc: str,
) -> dict[str, float]:
    """``run.steps`` optimiser steps; returns the epoch's mean losses."""
    from tqdm.auto import tqdm

    autocast = device.startswith("cuda") and config.bf16
    run.module.train()
    sums = {"loss": 0.0, "triplet": 0.0, "recon": 0.0, "proxy": 0.0, "triplets": 0.0}
    # per-step bars only on a terminal (None: tqdm checks); the epoch lines always print
    bar = tqdm(range(run.steps), desc=desc, disable=None if config.progress else True, leave=False)
    for _ in bar:
        idx = run.pool[run.sampler.batch()]
        xb = torch.from_numpy(td.x[idx].toarray()).to(device)
        labels = torch.from_numpy(td.labels[idx]).to(device)
        studies = torch.from_numpy(td.studies[idx]).to(device)
        # Denoising: the encoder sees a technically perturbed copy, the decoder rebuilds the
        # cells as measured.
        x_in = augment_batch(
            xb, studies, config.augment, target_sum=config.target_sum, generator=gen, labels=labels
        )
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=autocast):
            z, recon = run.module(x_in)
        z = z.float()
        triplets = mine_triplets(
            z.detach(), labels, studies, related,
            margin=config.margin, selection=config.negative_selection, generator=gen,
        )  # fmt: skip
        t_loss = triplet_loss(z, triplets, config.margin)
        r_loss = reconstruction_loss(recon, xb)
        loss = config.triplet_weight * t_loss + config.recon_weight * r_loss
        if run.proxies is not None:
            p_loss = run.proxies(z, torch.from_numpy(run.contexts[idx]).to(device))
            loss = loss + config.proxy_weight * p_loss
            sums["proxy"] += float(p_loss.detach())
        if config.l1_weight:
            loss = loss + config.l1_weight * l1_penalty(run.module.encoder.first_linear().weight)
        run.optimizer.zero_grad(set_to_none=True)
        torch.autograd.backward(loss)  # loss.backward(), which torch leaves unannotated
        run.optimizer.step()
        run.scheduler.step()
        for name, value in (("loss", loss), ("triplet", t_loss), ("recon", r_loss)):
            sums[name] += float(value.detach())
        sums["triplets"] += len(triplets)
        bar.set_postfix(loss=f"{loss.item():.4f}")
    return {k: v / run.steps for k, v in sums.items()}


def _fit(
    data: Any,
    *,
    config: TrainConfig,
    encoder_config: EncoderConfig | None = None,
    genes: Sequence[str] | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    related: np.ndarray | None = None,
) -> Checkpoint:
    """Train an encoder on raw counts with cell-type and study annotations.

    data: AnnData or iterable of ``CellChunk`` (obs must hold ``config.label_key``
    and ``config.study_key``). genes: the model's gene order (default: the
    data's). related: (T, T) bool over the sorted label vocabulary, overriding
    the ontology. checkpoint_dir: where the best model and the resumable state
    are written each epoch; with ``resume=True`` training continues from there.

    Two phases. *Selection*: train on all but the held-out studies, score them each epoch,
    keep the best epoch (early stopping). *Refit* (``config.refit``): train again from the
    same seed on every study for that many epochs, so the shipped weights have seen every
    study's technical effects; the held-out score reported is the selection run's.
    """
    started = time.time()
    rng = np.random.default_rng(config.seed)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    device = resolve_device(config.device)
    td = prepare_training_data(
        data,
        genes=genes,
        label_key=config.label_key,
        study_key=config.study_key,
        target_sum=config.target_sum,
        tissue_key=config.tissue_key,
    )
    descends = label_descends(td.label_vocab)
    rel = descends | descends.T if related is None else np.asarray(related, dtype=bool)
    if rel.shape != (len(td.label_vocab), len(td.label_vocab)):
        msg = f"related must be {len(td.label_vocab)}x{len(td.label_vocab)}, got {rel.shape}"
        raise ValueError(msg)
    rel_t = torch.from_numpy(rel).to(device)
    val_studies = split_studies(td.study_vocab, config, rng)
    is_val = np.isin(np.asarray(td.study_vocab)[td.studies], val_studies)
    train_idx, val_idx = np.flatnonzero(~is_val), np.flatnonzero(is_val)
    ref_idx = train_idx
    if len(ref_idx) > MAX_REFERENCE_CELLS:
        ref_idx = np.sort(rng.choice(train_idx, MAX_REFERENCE_CELLS, replace=False))

    cfg = encoder_config or EncoderConfig(n_genes=len(td.genes), hidden_dims=RECIPE_HIDDEN_DIMS)
    if cfg.n_genes != len(td.genes):
        msg = f"encoder_config.n_genes={cfg.n_genes} but the gene order has {len(td.genes)}"
        raise ValueError(msg)
    run = _new_run(cfg, config, td, train_idx, device, descends)
    gen = torch.Generator().manual_seed(config.seed)
    history: list[dict[str, float]] = []
    best_score, best_state, bad_epochs, start_epoch = -math.inf, None, 0, 0
    best_epoch = 0

    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if resume and ckpt_dir is not None and (ckpt_dir / TRAIN_STATE).is_file():
        state = torch.load(ckpt_dir / TRAIN_STATE, map_location=device, weights_only=False)
        run.module.load_state_dict(state["module"])
        if run.proxies is not None and state.get("proxies") is not None:
            run.proxies.load_state_dict(state["proxies"])
        run.optimizer.load_state_dict(state["optimizer"])
        run.scheduler.load_state_dict(state["scheduler"])
        run.sampler.rng.bit_generator.state = state["sampler_rng"]
        torch.set_rng_state(state["torch_rng"])
        gen.set_state(state["gen_rng"])
        history, best_score, bad_epochs = state["history"], state["best_score"], state["bad_epochs"]
        best_epoch = state.get("best_epoch", 0)
        best_state, start_epoch = state["best_state"], state["epoch"] + 1

    planned = config.epochs
    budget_s = config.max_minutes * 60.0 if config.max_minutes else None
    refit = config.refit and len(val_idx) > 0
    loop_started = time.time()
    epoch = start_epoch
    while epoch < planned:
        record: dict[str, float] = {
            "epoch": epoch + 1,
            **_train_epoch(run, td, config, rel_t, gen, device, f"epoch {epoch + 1}/{planned}"),
        }
        if len(val_idx):
            record.update(
                evaluate(
                    run.module, td, ref_idx, val_idx,
                    k=config.knn_k, device=device, descends=descends,
                )
            )  # fmt: skip
            score = record["val_macro_f1"]
        else:
            score = -record["loss"]
        record["seconds"] = round(time.time() - started, 1)
        history.append(record)
        if score > best_score + config.min_delta:
            best_score, bad_epochs, best_epoch = score, 0, epoch + 1
            best_state = copy.deepcopy({k: v.cpu() for k, v in run.module.state_dict().items()})
        else:
            bad_epochs += 1
        if ckpt_dir is not None:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            torch.save(
                {
                    "module": run.module.state_dict(),
                    "proxies": None if run.proxies is None else run.proxies.state_dict(),
                    "optimizer": run.optimizer.state_dict(),
                    "scheduler": run.scheduler.state_dict(),
                    "sampler_rng": run.sampler.rng.bit_generator.state,
                    "torch_rng": torch.get_rng_state(),
                    "gen_rng": gen.get_state(),
                    "history": history,
                    "best_score": best_score,
                    "bad_epochs": bad_epochs,
                    "best_epoch": best_epoch,
                    "best_state": best_state,
                    "epoch": epoch,
                },
                ckpt_dir / TRAIN_STATE,
            )
        if config.progress:
            from tqdm.auto import tqdm

            tqdm.write(format_epoch(record, planned))
        if bad_epochs >= config.patience:
            break
        ran = epoch + 1 - start_epoch
        if config.max_epochs_per_run and ran >= config.max_epochs_per_run:
            break  # a time-boxed slice of a longer run: resume=True continues it
        epoch += 1
        if budget_s is not None:
            # The refit repeats the best epochs on more cells: keep room for it.
            per_epoch = (time.time() - loop_started) / ran
            share = 1.0 + (len(td.labels) / max(1, len(train_idx)) if refit else 0.0)
            fits = epoch + int((budget_s / share - (time.time() - started)) // per_epoch)
            if fits < planned:
                planned = max(epoch, fits)
                run.schedule.replan(run.steps * planned)

    module = run.module
    if best_state is not None:
        module.load_state_dict(best_state)
    held_out = held_out_distances(module, td, ref_idx, val_idx, device) if len(val_idx) else None
    refit_epochs = 0
    if refit and best_epoch > 0:
        # Same recipe, every study, the number of epochs the held-out studies chose; the
        # schedule anneals over exactly those epochs.
        refit_epochs = best_epoch
        all_idx = np.arange(len(td.labels))
        run = _new_run(cfg, config, td, all_idx, device, descends)
        run.schedule.replan(run.steps * refit_epochs)
        gen = torch.Generator().manual_seed(config.seed)
        for e in range(refit_epochs):
            sums = _train_epoch(
                run, td, config, rel_t, gen, device, f"refit on all studies {e + 1}/{refit_epochs}"
            )
            if config.progress:
                from tqdm.auto import tqdm

                tqdm.write(
                    f"refit {e + 1}/{refit_epochs} on all {len(td.study_vocab)} studies  "
                    f"loss {sums['loss']:.4f}  [{time.time() - started:.0f} s]"
                )
        module = run.module
    module.eval()
    training = {
        "train_config": config.to_dict(),
        "history": history,
        "best_score": best_score,
        "best_epoch": best_epoch,
        "refit_epochs": refit_epochs,
        "val_studies": val_studies,
        "held_out_distances": held_out,
        "n_train_cells": len(train_idx),
        "n_val_cells": len(val_idx),
        "studies": td.study_vocab,
        "target_sum": config.target_sum,
        "torch_version": torch.__version__,
        "device": device,
        "seconds": round(time.time() - started, 1),
    }
    ckpt = Checkpoint(
        config=module.config,
        state_dict={k: v.detach().cpu() for k, v in module.state_dict().items()},
        genes=list(td.genes),
        labels=list(td.label_vocab),
        training=training,
    )
    if ckpt_dir is not None:
        save_checkpoint(ckpt_dir / BEST_MODEL, ckpt)
    return ckpt
