"""One evaluation run: splits -> embeddings -> scores -> plots -> REPORT.md.

Kept as plain sequential steps (nanoGPT style): every method sees the same split object, so
every number in a table comes from the same cells. Progress lines go to the ``log`` callable.
"""

from __future__ import annotations

import functools
import json
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.eval import perf, plots, report
from benchmarks.eval.ablation import per_seed_scores, run_ablation, seed_table
from benchmarks.eval.config import EvalConfig
from benchmarks.eval.datasets import STUDY, TRUTH, Split, pbmc_split, simulated_split
from benchmarks.eval.encoder_fit import train_reference_encoder
from benchmarks.eval.integration import integration_scores, subsample
from benchmarks.eval.methods import Embedding, embed
from benchmarks.eval.tasks import Scores, celltypist_scores, score_embedding

Log = Callable[[str], None]


@dataclass
class SplitResult:
    """Everything measured on one split."""

    split: Split
    embeddings: dict[str, Embedding]
    scores: dict[str, Scores]
    integration: pd.DataFrame | None
    headline: pd.DataFrame
    figures: dict[str, str] = field(default_factory=dict)


@functools.cache
def _ancestors(term: str) -> frozenset[str]:
    import ontology

    return ontology.ancestors(term)


@functools.cache
def _label(term: str) -> str:
    import ontology

    try:
        return ontology.label(term)
    except Exception:
        return term


def headline_table(scores: dict[str, Scores], integ: pd.DataFrame | None) -> pd.DataFrame:
    """The per-method summary row: the same columns as ``report.HEADLINE_COLUMNS``."""
    rows = {}
    for name, sc in scores.items():
        row = {
            "kNN accuracy": sc.annotation.get("accuracy", np.nan),
            "macro-F1": sc.annotation.get("macro_f1", np.nan),
            "ontology score": sc.annotation.get("ontology_score", np.nan),
            "precision@10": sc.retrieval.get("precision@10", np.nan),
            "scib bio": np.nan,
            "scib batch": np.nan,
            "scib total": np.nan,
            "known type confident": sc.confidence.get("in_dist_confident", np.nan),
            "absent type flagged": sc.confidence.get("absent_flagged", np.nan),
            "unknown AUROC": sc.confidence.get("auroc", np.nan),
        }
        if integ is not None and name in integ.index:
            row["scib bio"] = integ.loc[name, "Bio conservation"]
            row["scib batch"] = integ.loc[name, "Batch correction"]
            row["scib total"] = integ.loc[name, "Total"]
        rows[name] = row
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "method"
    return frame


def evaluate_split(
    split: Split, cfg: EvalConfig, out_dir: Path, log: Log, encoder: object = None
) -> SplitResult:
    """Embed, score, integrate and plot one split."""
    log(f"[{split.name}] {split.summary()}")
    embeddings = {m: embed(m, split, cfg, log, encoder) for m in cfg.methods}
    usable = {m: e.X for m, e in embeddings.items() if e.X is not None}
    scores: dict[str, Scores] = {}
    for m, X in usable.items():
        scores[m] = score_embedding(m, X, split, cfg, _ancestors)
        log(f"  scored {m}: {scores[m].annotation} {scores[m].confidence}")
    log("  celltypist ...")
    scores["celltypist"] = celltypist_scores(split, cfg, _ancestors)
    log(f"  scored celltypist: {scores['celltypist'].annotation}")

    log("  scib-metrics ...")
    t0 = time.perf_counter()
    integ = integration_scores(split, usable, cfg) if usable else None
    log(f"  scib-metrics in {time.perf_counter() - t0:.0f} s")
    headline = headline_table(scores, integ)
    headline["fit s"] = [
        embeddings[m].seconds if m in embeddings else scores[m].seconds for m in headline.index
    ]
    result = SplitResult(split, embeddings, scores, integ, headline)

    log("  UMAPs ...")
    rows = subsample(len(split.obs), cfg.umap_cells, cfg.seed + 1)
    coords = {m: plots.umap_coords(X[rows], cfg.seed) for m, X in usable.items()}
    colourings = {"cell type": split.obs[TRUTH].to_numpy()[rows]}
    if split.n_batches > 1:
        colourings["study"] = split.obs[STUDY].to_numpy()[rows]
    role = split.obs["role"].to_numpy()[rows]
    absent = split.obs["absent"].to_numpy()[rows]
    colourings["reference / query"] = np.where(absent, "query, absent type", role)
    names = {t: _label(t) for t in set(split.obs[TRUTH])}
    fig = plots.umap_grid(
        coords, colourings, out_dir / f"umap_{split.name}.png", f"UMAP — {split.name}", names
    )
    result.figures["umap"] = fig.name
    n_in = int((split.is_query & ~split.is_absent).sum())
    fig = plots.confidence_histograms(
        list(scores.values()),
        n_in,
        out_dir / f"confidence_{split.name}.png",
        f"Confidence — {split.name}: held-out known types vs types absent from the reference",
    )
    result.figures["confidence"] = fig.name
    return result


def run(cfg: EvalConfig, out_dir: Path, log: Log, command: str) -> Path:
    """The whole evaluation; returns the path of REPORT.md."""
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    splits = []
    for builder in (simulated_split, pbmc_split):
        t0 = time.perf_counter()
        splits.append(builder(cfg))
        log(f"built {splits[-1].name} in {time.perf_counter() - t0:.0f} s")
    encoder, encoder_info = None, {}
    seeds: pd.DataFrame | None = None
    ablation: pd.DataFrame | None = None
    with tempfile.TemporaryDirectory(prefix="cellsearch-eval-") as work:
        if "cellsearch" in cfg.methods:
            rows = []
            for seed in cfg.encoder_seeds:
                log(f"cellsearch train (defaults, seed {seed}) on reference cells only ...")
                enc, secs, studies = train_reference_encoder(splits, cfg, Path(work), seed=seed)
                rows.append(per_seed_scores(enc, seed, secs, splits, cfg, _ancestors))
                log(f"  trained {enc!r} in {secs:.0f} s on {len(studies)} studies: {rows[-1]}")
                if encoder is None:
                    encoder = enc
                    encoder_info = {
                        "seconds": secs,
                        "studies": studies,
                        "repr": repr(enc),
                        "training": enc.training,
                    }
            seeds = seed_table(rows)
            if cfg.ablation:
                log("recipe ablation ...")
                ablation = run_ablation(splits, cfg, Path(work), _ancestors, log)
    results = [evaluate_split(s, cfg, out_dir, log, encoder) for s in splits]
    if encoder_info:
        for r in results:
            if "cellsearch" in r.headline.index:
                r.headline.loc["cellsearch", "fit s"] += encoder_info["seconds"]
    runs: list[perf.BenchRun] = []
    latency_fig = None
    if cfg.perf:
        log("performance benchmarks ...")
        runs = perf.gather(out_dir / "perf", log)
        series = perf.selectivity_series(runs)
        if series:
            latency_fig = plots.latency_vs_selectivity(
                series, out_dir / "latency_vs_selectivity.png", "Filtered search latency"
            ).name
    seconds = time.perf_counter() - started
    text = render(cfg, results, runs, latency_fig, seconds, command, encoder_info, seeds, ablation)
    path = out_dir / "REPORT.md"
    path.write_text(text)
    (out_dir / "results.json").write_text(json.dumps(_json(results, cfg, seconds), indent=2))
    log(f"wrote {path} in {seconds / 60:.1f} min")
    return path


def _json(results: list[SplitResult], cfg: EvalConfig, seconds: float) -> dict:
    def clean(frame: pd.DataFrame | None) -> dict | None:
        if frame is None:
            return None
        return json.loads(frame.to_json(orient="index"))

    return {
        "config": cfg.to_dict(),
        "seconds": seconds,
        "splits": {
            r.split.name: {
                "summary": r.split.summary(),
                "headline": clean(r.headline),
                "integration": clean(r.integration),
                "embed_seconds": {m: e.seconds for m, e in r.embeddings.items()},
            }
            for r in results
        },
    }


def render(
    cfg: EvalConfig,
    results: list[SplitResult],
    runs: list[perf.BenchRun],
    latency_fig: str | None,
    seconds: float,
    command: str,
    encoder_info: dict | None = None,
    seeds: pd.DataFrame | None = None,
    ablation: pd.DataFrame | None = None,
) -> str:
    """The REPORT.md text."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    sim = results[0]
    out = [
        "# cellsearch evaluation against its peers",
        "",
        f"Generated by `{command}` on {now} in {seconds / 60:.1f} min "
        f"({platform.processor() or platform.machine()}, CPU only, preset `{cfg.preset}`). "
        "Every method is scored on the same cells of the same splits.",
        "",
        f"## Headline — {sim.split.name} atlas, leave-studies-out",
        "",
        report.table(sim.headline),
        "",
        _headline_legend(cfg),
        "",
        *(
            [
                f"### cellsearch over {len(cfg.encoder_seeds)} training seeds (mean ± sd)",
                "",
                "`cellsearch train` with its defaults, retrained per seed; `train s` is the "
                "whole command on this machine.",
                "",
                report.table(seeds),
                "",
            ]
            if seeds is not None
            else []
        ),
        *(
            [
                "### Recipe ablation (one change per row, seed of the headline)",
                "",
                report.table(ablation),
                "",
            ]
            if ablation is not None
            else []
        ),
        "### Where cellsearch loses",
        "",
    ]
    for r in results:
        lost = report.losses(r.headline)
        won = report.wins(r.headline)
        out.append(f"- **{r.split.name}**: loses on " + ("; ".join(lost) if lost else "nothing"))
        out.append(f"  - best or tied on: {', '.join(won) if won else 'nothing'}")
    out += ["", "## Protocol", "", _protocol(cfg), ""]
    if encoder_info:
        out += [
            f"cellsearch encoder: {encoder_info['repr']}, trained in "
            f"{encoder_info['seconds']:.0f} s on the reference cells of "
            f"{', '.join(encoder_info['studies'])} (nothing else).",
            "",
        ]
    out += ["### Splits", ""]
    out.append(report.records_table([r.split.summary() for r in results]))
    for r in results:
        out += _split_section(r)
    out += _perf_section(runs, latency_fig)
    out += ["", "## Settings of this run", "", "```json", json.dumps(cfg.to_dict(), indent=1)]
    out += ["```", ""]
    return "\n".join(out)


def _headline_legend(cfg: EvalConfig) -> str:
    return (
        f"kNN accuracy / macro-F1: exact leaf-type match of a {cfg.k}-NN ontology-aware vote "
        "over the reference's own labels (CellTypist: its classifier). Ontology score: partial "
        "credit for a correct ancestor, |anc(pred)|/|anc(truth)|. precision@10: share of a "
        "query cell's 10 nearest reference cells (other studies) of its true type. scib: "
        "bio conservation, batch correction, total = 0.6 bio + 0.4 batch. Known type "
        "confident: held-out cells of reference types whose mean kNN distance is within the "
        f"{cfg.confidence_quantile:.0%} quantile of the reference cells' distances to *other* "
        "studies (a query is a new study; CellTypist: max probability ≥ 0.5); absent type "
        "flagged: cells of types removed from the reference beyond it; AUROC separates the two "
        "by the same score. fit s: seconds to fit or train (cellsearch: the whole "
        "`cellsearch train` command plus embedding), one run."
    )


def _protocol(cfg: EvalConfig) -> str:
    return "\n".join(
        [
            "- **cellsearch** is inductive: `cellsearch train` with its defaults (the shipped "
            "recipe and architecture, the CLI's time budget"
            + (f", `--epochs {cfg.encoder_epochs}`" if cfg.encoder_epochs else "")
            + ") is run here on the reference cells of both splits only, written as one "
            ".h5ad per split (simulated reference studies + the PBMC reference half; no query "
            "cell, no absent type). The committed default model is *not* used: it was trained "
            "on all 700 PBMCs "
            "and on the seed-0 atlas, so it would be scored on its own training cells. The "
            "simulated atlas contains dendritic cells, so the encoder has seen that type even "
            "though the PBMC reference lacks it.",
            "- Known-type confidence and absent-type flagging trade off (a method that flags "
            "everything gets 1.0 on the second and 0.0 on the first): read them with the AUROC.",
            "- **PCA, Harmony, scVI, scanorama** are transductive, as scib runs them: fitted on "
            "reference + query together with the study as batch, so they see the query's "
            f"batches, which cellsearch does not. scVI: {cfg.scvi_epochs} epochs (shortened "
            "for CPU), 30 latent dims, 2 layers.",
            "- **CellTypist** trains its default one-vs-rest logistic-regression classifier on "
            "the reference labels (log1p CP10k) and predicts the query (best match).",
            "- Reference labels come at each study's granularity (fine, medium, coarse), the "
            "truth is the leaf type: exact accuracy is capped below 1 for every method, "
            "the ontology score is not.",
            f"- scib-metrics on a random {cfg.integration_cells}-cell subsample (same cells for "
            f"every method), exact neighbours; UMAPs on {cfg.umap_cells} cells.",
            f"- Absent types (removed from the reference, kept in the query): simulated "
            f"{', '.join(f'{t} ({_label(t)})' for t in cfg.absent_types)}; PBMC "
            f"{', '.join(f'{t} ({_label(t)})' for t in cfg.pbmc_absent_types)}.",
        ]
    )


def _split_section(r: SplitResult) -> list[str]:
    s = r.split
    out = ["", f"## {s.name}", "", s.description + ".", ""]
    out += [f"> {note}" for note in s.notes]
    na = [f"{m}: {e.note}" for m, e in r.embeddings.items() if e.X is None]
    if na:
        out += ["", "Not run: " + "; ".join(na) + "."]
    out += ["", "### Annotation (query cells of reference types)", ""]
    ann = pd.DataFrame({m: {**sc.annotation, **sc.retrieval} for m, sc in r.scores.items()}).T
    ann.index.name = "method"
    out.append(report.table(ann))
    notes = [f"{m}: {sc.note}" for m, sc in r.scores.items() if sc.note]
    if notes:
        out += ["", "; ".join(notes) + "."]
    if r.integration is not None:
        out += ["", "### Integration (scib-metrics)", "", report.table(r.integration)]
    out += ["", "### Confidence", ""]
    conf = pd.DataFrame(
        {m: {**sc.confidence, "threshold": sc.threshold} for m, sc in r.scores.items()}
    ).T
    conf.index.name = "method"
    out += [report.table(conf), "", f"![confidence]({r.figures['confidence']})"]
    times = pd.DataFrame(
        {
            m: {"seconds": e.seconds, "protocol": e.protocol, "note": e.note}
            for m, e in r.embeddings.items()
        }
    ).T
    times.index.name = "method"
    out += ["", "### Embedding time and protocol", "", report.table(times, digits=1)]
    out += ["", "### UMAP", "", f"![umap]({r.figures['umap']})"]
    return out


def _perf_section(runs: list[perf.BenchRun], latency_fig: str | None) -> list[str]:
    out = ["", "## Performance (the other benchmarks, same run)", ""]
    if not runs:
        out.append("_No `benchmarks/bench_*.py` script was run (none found or `--no-perf`)._")
    for run in runs:
        status = "ok" if run.returncode == 0 else f"exit {run.returncode}"
        out += [
            f"### {run.script} `{' '.join(run.args)}` ({status}, {run.seconds:.0f} s)",
            "",
            "```",
            run.stdout[-6000:] or "(no output)",
            "```",
        ]
        if run.returncode != 0 and run.stderr_tail:
            out += ["", "stderr tail:", "", "```", run.stderr_tail, "```"]
    if latency_fig:
        out += ["", f"![latency vs selectivity]({latency_fig})"]
    return out
