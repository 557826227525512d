"""``make demo``: the whole platform on one machine, answering two real questions.

1. Loads the committed default encoder; writes the inputs: real PBMCs (scanpy's
   pbmc68k_reduced, 700 cells, counts restored from its log-normalised ``.raw`` and the
   recorded library sizes) split into a reference and held-out cells, and a simulated
   multi-tissue atlas with interstitial lung disease studies.
2. Starts the embedded platform: store, gRPC server (auth on, random port) and an
   ingestion worker (through Redis when it answers, in-process otherwise).
3. Ingests both datasets through ``SubmitIngestion`` and follows them with ``WatchJob``.
4. Asks, through the Python client: "cells similar to these fibrosis-associated
   macrophages, only in lung with interstitial lung disease" (other studies only), and
   annotates the held-out real PBMCs, printing labels and confidences against the truth.
5. Stops everything and removes what it wrote (``--keep`` leaves the folder).
"""

from __future__ import annotations

import secrets
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd

FIBROTIC_MACROPHAGE = "CL:4033043"  # lung interstitial macrophage (SPP1+, profibrotic)
ILD = "MONDO:0015925"
PBMC_HELD_OUT = 150
ATLAS_STUDIES = 16
QUERY_CELLS = 25


class _Printer:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.t0 = time.perf_counter()

    def step(self, text: str) -> None:
        elapsed = time.perf_counter() - self.t0
        print(f"\n[{elapsed:6.1f} s] == {text}", file=self.out, flush=True)

    def __call__(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)


def write_pbmc_counts(
    folder: Path, *, panel: list[str], held_out: int, seed: int = 0
) -> tuple[Path, Any]:
    """The real PBMCs as raw counts: a reference .h5ad, and the held-out cells (AnnData).

    pbmc68k_reduced keeps log1p(counts per 10k) in ``.raw`` and each cell's total in
    ``n_counts``; expm1 and rescaling give back the integer counts of its 765 genes.
    Those 765 genes are 38% of the default model's 2,000-gene panel, under the 50% gene
    overlap ingestion and query embedding require (a guard against the wrong species or
    id type), so the cells are written on the model's ``panel`` with the genes
    pbmc68k_reduced does not carry as zeros: exactly what the encoder's gene aligner does
    to a file it accepts, and how the default model saw these cells in training.
    """
    import anndata as ad
    import scipy.sparse as sp

    from celldata.bundled import load_pbmc68k_reduced

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = load_pbmc68k_reduced()
    raw = full.raw.X.toarray() if sp.issparse(full.raw.X) else np.asarray(full.raw.X)
    counts = np.rint(np.expm1(raw) * full.obs["n_counts"].to_numpy()[:, None] / 1e4)
    keep = [
        c
        for c in full.obs.columns
        if c.endswith("_ontology_term_id") or c in ("donor_id", "sample_id", "study_id")
    ]
    genes = [str(g) for g in full.raw.var_names]
    column = {g: i for i, g in enumerate(panel)}
    present = [i for i, g in enumerate(genes) if g in column]
    sparse = sp.csr_matrix(counts.astype(np.float32)[:, present])
    sparse = sp.csr_matrix(
        (sparse.data, np.array([column[genes[i]] for i in present])[sparse.indices], sparse.indptr),
        shape=(sparse.shape[0], len(panel)),
    )
    sparse.sort_indices()
    adata = ad.AnnData(X=sparse, obs=full.obs[keep].copy(), var=pd.DataFrame(index=pd.Index(panel)))
    adata.obs["bulk_labels"] = full.obs["bulk_labels"].astype(str).to_numpy()
    rng = np.random.default_rng(seed)
    held = np.zeros(adata.n_obs, dtype=bool)
    held[rng.choice(adata.n_obs, size=held_out, replace=False)] = True
    reference = adata[~held].copy()
    reference.obs = reference.obs.drop(columns="bulk_labels")
    path = folder / "pbmc68k_reference.h5ad"
    reference.write_h5ad(path)
    return path, adata[held].copy()


def run_demo(
    *,
    workdir: Path | None = None,
    atlas_cells: int = 20_000,
    keep: bool = False,
    out: TextIO | None = None,
) -> int:
    """Run the demo; returns a process exit status (0 when every step answered)."""
    from pydantic import SecretStr

    from cellsearch.app.embedded import start_platform
    from cellsearch.client import CellSearchClient
    from cellsearch.platform.settings import Settings, get_settings

    say = _Printer(out or sys.stdout)
    made_tmp = workdir is None
    root = Path(tempfile.mkdtemp(prefix="cellsearch-demo-")) if workdir is None else workdir
    inbox = root / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    base = get_settings()
    token = secrets.token_hex(16)
    settings = Settings(
        store_path=root / "store",
        redis_url=base.redis_url,
        model_dir=base.model_dir,
        ontology_cache_dir=base.ontology_cache_dir,
        allowed_roots=(inbox,),
        grpc_address="127.0.0.1:0",
        auth_token=SecretStr(token),
        ingest_chunk_cells=4096,
        embed_batch_size=2048,
        namespace=f"cellsearch-demo-{secrets.token_hex(4)}",  # readable keys, dropped at the end
    )
    platform = None
    try:
        say.step("loading the default encoder")
        enc = _load_or_build_encoder(say, settings, root)
        say(f"{enc!r}")

        say.step("writing the inputs")
        from celldata.simulate import make_atlas

        pbmc_path, held_out = write_pbmc_counts(
            inbox, panel=list(enc.genes), held_out=PBMC_HELD_OUT
        )
        say(
            f"real PBMCs (Zheng et al. 2017, pbmc68k_reduced): {700 - PBMC_HELD_OUT} reference "
            f"cells -> {pbmc_path.name}; {PBMC_HELD_OUT} held out for annotation"
        )
        atlas_path = inbox / "simulated_atlas.h5ad"
        summary = make_atlas(atlas_path, n_cells=atlas_cells, n_studies=ATLAS_STUDIES, seed=7)
        say(
            f"simulated atlas: {summary.n_cells} cells, {summary.n_studies} studies, "
            f"{summary.n_donors} donors, {summary.n_genes} genes ({summary.seconds:.1f} s)"
        )

        say.step("starting the embedded store, gRPC server and ingestion worker")
        platform = start_platform(settings, encoder=enc)
        say(
            f"server on {platform.address} (bearer token on); worker: {platform.mode}"
            + (" (Redis answered)" if platform.mode == "redis" else " (no Redis: a thread)")
        )
        client = CellSearchClient(platform.address, token=token, timeout=600)
        client.wait_ready()

        say.step("ingesting through SubmitIngestion / WatchJob")
        inputs = [(pbmc_path, "zheng2017-pbmc68k"), *split_by_study(atlas_path, inbox)]
        jobs = [client.submit_ingestion(path, study) for path, study in inputs]
        say(f"submitted {len(jobs)} jobs: the real PBMCs and {len(jobs) - 1} simulated studies")
        for job, (_, study) in zip(jobs, inputs, strict=True):
            job = _follow(say, client, job.job_id, study, verbose=job is jobs[0])
            if job.state != "SUCCEEDED":
                say(f"ingestion of {study} failed: {job.error_code}: {job.error}")
                return 1
        total, facets = client.stats(by=["tissue", "disease"], top=8)
        say(f"atlas: {total} cells")
        for name, frame in facets.items():
            say(f"  by {name}: " + ", ".join(f"{r.label} {r.count}" for r in frame.itertuples()))

        _fibrosis_query(say, client, atlas_path)
        _annotate_held_out(say, client, held_out)
        say.step("done")
        return 0
    finally:
        if platform is not None:
            platform.stop(grace=1.0)
            _drop_redis_keys(settings.redis_url, settings.jobs_namespace)
        if made_tmp and not keep:
            shutil.rmtree(root, ignore_errors=True)
        elif keep:
            say(f"kept {root}")


def _load_or_build_encoder(say: _Printer, settings: Any, root: Path) -> Any:
    """The configured or committed default model; trained here (minutes) when neither exists."""
    from cellsearch.platform.factories import load_encoder

    try:
        return load_encoder(settings)
    except FileNotFoundError as exc:
        if settings.model_dir is not None:
            raise
        say(f"{exc}; building it now (encoder.build_default, a few minutes on 2 cores)")
    from encoder.build_default import build

    return build(root / "model", progress=False)


def _follow(say: _Printer, client: Any, job_id: str, study: str, *, verbose: bool) -> Any:
    """Follow a job: a line per state change when ``verbose``, else one line at its end
    (readable in logs, unlike a redrawn progress bar)."""
    last = None
    for job in client.watch_job(job_id):
        if verbose and (last is None or job.state != last.state):
            total = f"/{job.cells_total}" if job.cells_total else ""
            say(f"  {study}: {str(job.state).lower():<10} {job.cells_done}{total} cells")
        last = job
    job = last if last is not None else client.get_job(job_id)
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in job.stage_seconds.items())
    say(f"  {study}: {job.state} {job.cells_done} cells ({stages})")
    return job


def split_by_study(atlas_path: Path, folder: Path) -> list[tuple[Path, str]]:
    """One .h5ad per simulated study: the atlas grows study by study, as a real one does
    (a job's study id labels every cell it ingests)."""
    import anndata as ad

    atlas = ad.read_h5ad(atlas_path)
    out = []
    for study in sorted(atlas.obs["study_id"].astype(str).unique()):
        part = atlas[atlas.obs["study_id"].astype(str) == study].copy()
        path = folder / f"{study}.h5ad"
        part.write_h5ad(path)
        out.append((path, study))
    return out


def _fibrosis_query(say: _Printer, client: Any, atlas_path: Path) -> None:
    import anndata as ad

    from cellsearch.app.cli import format_hits

    say.step(
        "cells similar to these fibrosis-associated macrophages, only in lung with "
        "interstitial lung disease"
    )
    obs = ad.read_h5ad(atlas_path, backed="r").obs
    fibrotic = obs[
        (obs["cell_type_ontology_term_id"].astype(str) == FIBROTIC_MACROPHAGE)
        & (obs["disease_ontology_term_id"].astype(str) == ILD)
    ]
    if fibrotic.empty:
        say("the simulated atlas holds no labelled fibrotic macrophages; use more --atlas-cells")
        return
    study = fibrotic["study_id"].astype(str).value_counts().index[0]
    query = list(fibrotic[fibrotic["study_id"].astype(str) == study].index[:QUERY_CELLS])
    say(f"query: {len(query)} SPP1+ lung interstitial macrophages (CL:4033043) of study {study}")
    flt: dict[str, Any] = {
        "tissues": ["lung"],
        "diseases": ["interstitial lung disease"],
        "exclude_query_studies": True,
    }
    hits, coherence = client.search_centroid(query, k=100, filter=flt)
    if hits.empty:
        say("no other ILD lung study holds cells; searching the query's own study too")
        flt.pop("exclude_query_studies")
        hits, coherence = client.search_centroid(query, k=100, filter=flt)
    say(f"filter {flt}; query coherence {coherence:.2f}")
    say(format_hits(hits, limit=10))
    say("\n100 nearest, by label (studies label at different granularity):")
    for label, n in hits["cell_type"].value_counts().items():
        say(f"  {n:4d}  {label}")
    for column in ("study_id", "tissue", "disease"):
        say(f"{column}: {', '.join(sorted(set(hits[column])))}")


def _annotate_held_out(say: _Printer, client: Any, held_out: Any) -> None:
    import ontology

    say.step(
        f"annotating {held_out.n_obs} held-out real PBMCs (not in the atlas; note the default "
        "encoder itself was trained on all 700)"
    )
    ann = client.annotate(
        held_out.X,
        genes=list(held_out.var_names),
        cell_names=list(held_out.obs_names),
        filter={"studies": ["zheng2017-pbmc68k"]},
    )
    truth = held_out.obs["cell_type_ontology_term_id"].astype(str).reindex(ann.index)
    ann["truth"] = [_short(ontology.label(t)) for t in truth]
    ann["cell_type"] = ann["cell_type"].map(_short)
    exact = (ann["cell_type_id"] == truth.to_numpy()).to_numpy()
    related = np.array(
        [
            a != "unknown" and ontology.is_related(a, t)
            for a, t in zip(ann["cell_type_id"], truth, strict=True)
        ]
    )
    cols = ["truth", "cell_type", "confidence", "representation_confidence"]
    say(ann[cols].head(12).to_string(float_format=lambda v: f"{v:.2f}"))
    say(
        f"\nexact label: {exact.mean():.0%}; same lineage (ancestor or descendant): "
        f"{related.mean():.0%}; unknown: {ann['unknown'].mean():.0%}; "
        f"median confidence {ann['confidence'].median():.2f}"
    )
    high = ann["confidence"] >= 0.8
    if high.any():
        share, right = high.mean(), exact[high.to_numpy()].mean()
        say(f"cells with confidence >= 0.8: {share:.0%}, exact label among them {right:.0%}")


def _short(label: str, width: int = 30) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def _drop_redis_keys(url: str, namespace: str) -> None:
    """The demo's job records, registry and queues (``<namespace>:...``, ``<namespace>.queue``)."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
        keys = [
            k
            for pattern in ("{}:*", "{}.*", "_kombu.binding.{}.*")
            for k in client.scan_iter(pattern.format(namespace))
        ]
        if keys:
            client.delete(*keys)
        client.close()
    except redis.RedisError:
        pass
