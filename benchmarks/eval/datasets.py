"""The two evaluation splits every method is scored on: cells, labels, reference and query.

* ``simulated``: a multi-study atlas split by *study* (leave-studies-out): whole studies are held
  out as the query, so no query cell shares a study, donor or technical effect with the
  reference. Reference labels are the studies' own, at mixed granularity; the truth of a query
  cell is its leaf type. A few leaf types are removed from the reference to test "unknown".
* ``pbmc``: the 700 real pbmc68k PBMCs (one study, one donor): a stratified half/half split by
  cell, one type removed from the reference. It has no raw counts and no batches, so scVI and
  batch-correction metrics do not apply to it; the report says so rather than faking either.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from benchmarks.eval.config import EvalConfig

TRUTH = "truth"
REF_LABEL = "ref_label"
STUDY = "study"
ROLE = "role"  # "reference" or "query"
ABSENT = "absent"  # query cell of a type removed from the reference


@dataclass
class Split:
    """All cells of one evaluation (reference + query) and what each method may see.

    ``obs`` columns: ``truth`` (CL leaf), ``ref_label`` (the label a reference user has: the
    study's term), ``study``, ``role`` and ``absent``. Methods embed all rows; annotation and
    retrieval look only at reference labels; truth scores the query.
    """

    name: str
    description: str
    lognorm: sp.csr_matrix
    genes: list[str]
    obs: pd.DataFrame
    counts: sp.csr_matrix | None = None
    absent_types: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)

    @property
    def is_ref(self) -> np.ndarray:
        return (self.obs[ROLE] == "reference").to_numpy()

    @property
    def is_query(self) -> np.ndarray:
        return (self.obs[ROLE] == "query").to_numpy()

    @property
    def is_absent(self) -> np.ndarray:
        return self.obs[ABSENT].to_numpy(dtype=bool)

    @property
    def n_batches(self) -> int:
        return int(self.obs[STUDY].nunique())

    def summary(self) -> dict[str, object]:
        """Counts for the report's split table."""
        q = self.is_query
        return {
            "split": self.name,
            "cells": len(self.obs),
            "genes": len(self.genes),
            "studies": self.n_batches,
            "reference cells": int(self.is_ref.sum()),
            "query cells": int(q.sum()),
            "query studies": ", ".join(sorted(self.obs.loc[q, STUDY].unique())),
            "absent-type query cells": int(self.is_absent.sum()),
            "types": int(self.obs[TRUTH].nunique()),
        }


def log_normalise(counts: sp.csr_matrix, target_sum: float = 1e4) -> sp.csr_matrix:
    """log1p of counts per ``target_sum``: the input every peer but scVI expects."""
    counts = sp.csr_matrix(counts, dtype=np.float32)
    totals = np.asarray(counts.sum(axis=1)).ravel()
    scale = np.divide(target_sum, totals, out=np.zeros_like(totals), where=totals > 0)
    out = sp.diags(scale.astype(np.float32)) @ counts
    out = sp.csr_matrix(out)
    out.data = np.log1p(out.data)
    return out


def choose_query_studies(studies: pd.DataFrame, fraction: float, seed: int) -> list[str]:
    """Hold out about ``fraction`` of the studies, at most one per tissue at a time.

    Spreading the held-out studies over tissues keeps every held-out tissue represented in the
    reference (a tissue with a single study is never held out).
    """
    rng = np.random.default_rng(seed)
    n_target = max(1, round(fraction * len(studies)))
    by_tissue = {
        tissue: list(rng.permutation(group["study_id"].to_numpy()))
        for tissue, group in studies.groupby("tissue", sort=True)
    }
    chosen: list[str] = []
    while len(chosen) < n_target:
        added = False
        for tissue in sorted(by_tissue):
            pool = by_tissue[tissue]
            if len(pool) >= 2 and len(chosen) < n_target:  # keep one study per tissue
                chosen.append(str(pool.pop()))
                added = True
        if not added:
            break
    if not chosen:
        msg = f"cannot hold out a study: no tissue has two studies among {len(studies)}"
        raise ValueError(msg)
    return sorted(chosen)


BLOOD = "UBERON:0000178"


def simulated_split(cfg: EvalConfig) -> Split:
    """Leave-studies-out split of a simulated atlas (see the module docstring)."""
    from celldata.simulate import simulate_atlas

    adata = simulate_atlas(cfg.atlas_cells, cfg.atlas_studies, seed=cfg.seed)
    studies = adata.uns["studies"]
    studies = studies if isinstance(studies, pd.DataFrame) else pd.DataFrame(studies)
    query_studies = choose_query_studies(studies, cfg.query_study_fraction, cfg.seed)
    truth = adata.obs["true_cell_type_ontology_term_id"].astype(str).to_numpy()
    study = adata.obs["study_id"].astype(str).to_numpy()
    is_query = np.isin(study, query_studies)
    absent = np.isin(truth, cfg.absent_types)
    keep = is_query | ~absent  # absent types leave the reference entirely
    obs = pd.DataFrame(
        {
            TRUTH: truth,
            REF_LABEL: adata.obs["cell_type_ontology_term_id"].astype(str).to_numpy(),
            STUDY: study,
            ROLE: np.where(is_query, "query", "reference"),
            ABSENT: absent & is_query,
            "tissue": adata.obs["tissue_ontology_term_id"].astype(str).to_numpy(),
        },
        index=adata.obs_names,
    )[keep]
    counts = sp.csr_matrix(adata.X)[keep]
    return Split(
        name="simulated",
        description=(
            f"simulated atlas, {cfg.atlas_cells} cells, {cfg.atlas_studies} studies (seed "
            f"{cfg.seed}); query = held-out studies {', '.join(query_studies)}"
        ),
        lognorm=log_normalise(counts),
        genes=list(adata.var_names),
        obs=obs,
        counts=counts,
        absent_types=tuple(cfg.absent_types),
    )


def pbmc_split(cfg: EvalConfig) -> Split:
    """Stratified half/half split of the real pbmc68k_reduced cells (see the module docstring)."""
    from celldata.bundled import load_pbmc68k_reduced

    adata = load_pbmc68k_reduced()
    truth = adata.obs["cell_type_ontology_term_id"].astype(str).to_numpy()
    rng = np.random.default_rng(cfg.seed)
    is_query = np.zeros(len(truth), dtype=bool)
    for label in np.unique(truth):
        idx = rng.permutation(np.flatnonzero(truth == label))
        is_query[idx[: round(cfg.pbmc_query_fraction * len(idx))]] = True
    absent = np.isin(truth, cfg.pbmc_absent_types)
    keep = is_query | ~absent
    obs = pd.DataFrame(
        {
            TRUTH: truth,
            REF_LABEL: truth,
            STUDY: adata.obs["study_id"].astype(str).to_numpy(),
            ROLE: np.where(is_query, "query", "reference"),
            ABSENT: absent & is_query,
            "tissue": BLOOD,  # peripheral blood mononuclear cells
        },
        index=adata.obs_names,
    )[keep]
    lognorm = sp.csr_matrix(adata.raw.X, dtype=np.float32)[keep]
    return Split(
        name="pbmc",
        description=(
            "pbmc68k_reduced (Zheng et al. 2017), 700 real PBMCs, 765 genes, log-normalised "
            "only; query = a stratified half of the cells"
        ),
        lognorm=lognorm,
        genes=list(adata.raw.var_names),
        obs=obs,
        counts=None,
        absent_types=tuple(cfg.pbmc_absent_types),
        notes=[
            "one study and one donor: batch-correction metrics and batch-integration "
            "methods (Harmony, scanorama) do not apply; no raw counts, so scVI does not either"
        ],
    )
