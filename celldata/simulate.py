"""A simulated multi-study atlas: raw negative-binomial counts over real human genes.

Why simulate: no machine here reaches CELLxGENE, and training, ingestion and search need
many studies with batch effects, mixed label granularity and disease-specific populations.

Model (all parameters in :class:`AtlasParams`):

* **Genes**: the genes of pbmc68k_reduced that today's GENCODE table knows, every marker and
  disease-program gene, then protein-coding genes from the human table, up to ``n_genes``.
* **Type profiles**: the 10 PBMC types take their real mean profile (pbmc68k_reduced,
  counts per 10k) on the pbmc68k genes; other genes and non-PBMC types draw log-normal
  deviations from a shared baseline; subtypes derive from a ``base`` type; markers get a
  fixed share of the library. See :mod:`celldata.atlas_tables` for the types.
* **Studies**: one tissue each; case-control or all-normal donors; a labelling granularity;
  an assay; and technical effects: library size, gene-wise scaling, NB dispersion scale,
  dropout of low counts, and a gene panel (genes outside it read zero).
* **Donors** are nested in studies (with their own gene-wise effect and composition);
  samples are nested in donors.
* **Counts**: ``Poisson(Gamma(1/phi, mu*phi))`` per cell and gene, i.e. NB(mu, phi).

Generation is block-wise: each block of ``_BLOCK`` cells has its own RNG stream keyed by
``(seed, block)``, so the result depends on the seed only, not on ``chunk_size``, and
:func:`make_atlas` writes a file identical to :func:`simulate_atlas` in memory.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from celldata.atlas_tables import (
    ATLAS_ASSAYS,
    ATLAS_CELL_TYPES,
    ATLAS_TISSUES,
    DISEASE_COMPOSITION,
    DISEASE_PROGRAMS,
    GRANULARITIES,
    NORMAL,
    TISSUE_DISEASES,
    TISSUE_STUDY_WEIGHTS,
    CellTypeSpec,
    marker_genes,
    study_label,
)
from celldata.bundled import pbmc68k_type_means
from celldata.genes import human_gene_table, human_symbols

_BLOCK = 2048
_DENSE_MU = 0.1
OBS_COLUMNS: tuple[str, ...] = (
    "cell_type_ontology_term_id",
    "true_cell_type_ontology_term_id",
    "tissue_ontology_term_id",
    "disease_ontology_term_id",
    "assay_ontology_term_id",
    "donor_id",
    "sample_id",
    "study_id",
)


@dataclass(frozen=True)
class AtlasParams:
    """Every knob of the simulation, with the defaults the tests and benchmarks use."""

    n_genes: int = 2000
    baseline_sd: float = 1.5
    """log-scale spread of the shared baseline profile across genes."""
    type_sd: float = 0.6
    """log-scale deviation of an unrelated type from the baseline."""
    subtype_sd: float = 0.3
    """log-scale deviation of a subtype from its ``base`` type."""
    marker_share: tuple[float, float] = (0.003, 0.01)
    """each marker's share of the library (uniform in this range)."""
    study_gene_sd: float = 0.5
    """gene-wise log-scale technical effect per study (the main batch effect)."""
    study_type_sd: float = 0.4
    """log-scale study x cell type interaction (a type reads differently per study)."""
    ambient: tuple[float, float] = (0.0, 0.1)
    """per-study share of each cell's library from ambient RNA (the tissue's mean profile)."""
    donor_gene_sd: float = 0.15
    library_log_mean: tuple[float, float] = (7.3, 8.7)
    """per-study mean log library size (e^7.3 ~ 1,500 to e^8.7 ~ 6,000 UMIs)."""
    library_log_sd: float = 0.35
    dispersion_log_mean: float = -1.6
    """gene-wise NB dispersion phi ~ exp(N(mean, sd)) (phi ~ 0.2)."""
    dispersion_log_sd: float = 0.5
    study_dispersion_scale: tuple[float, float] = (0.7, 1.5)
    dropout: tuple[float, float] = (0.0, 0.3)
    """per-study probability of losing each count of 1 or 2."""
    panel_fraction: tuple[float, float] = (0.8, 1.0)
    """share of genes each study measures (the rest read zero)."""
    donors_per_study: tuple[int, int] = (2, 6)
    samples_per_donor: tuple[int, int] = (1, 2)
    case_control_probability: float = 0.6
    composition_concentration: float = 60.0
    """Dirichlet concentration of a donor's composition around its tissue/disease mean."""


@dataclass
class AtlasSummary:
    """What :func:`make_atlas` wrote and how fast."""

    path: Path
    n_cells: int
    n_genes: int
    n_studies: int
    n_donors: int
    nnz: int
    seconds: float
    studies: pd.DataFrame

    @property
    def cells_per_second(self) -> float:
        return self.n_cells / self.seconds if self.seconds > 0 else float("inf")


# ---------------------------------------------------------------------------- design


def atlas_genes(n_genes: int = 2000) -> list[str]:
    """The gene symbols of the atlas: pbmc68k genes, markers, then protein-coding genes.

    Deterministic and independent of the atlas seed, so atlases of any seed share genes.
    """
    known = human_symbols()
    genes = [g for g in pbmc68k_type_means().columns if g in known]
    genes += [g for g in marker_genes() if g in known]
    genes = list(dict.fromkeys(genes))
    if len(genes) >= n_genes:
        return genes[:n_genes]
    table = human_gene_table()
    coding = table.loc[table["biotype"] == "protein_coding", "symbol"].drop_duplicates()
    rng = np.random.default_rng(20240101)
    pool = [g for g in coding.to_numpy()[rng.permutation(len(coding))] if g not in set(genes)]
    return genes + pool[: n_genes - len(genes)]


@dataclass
class _Design:
    genes: list[str]
    type_log_profiles: np.ndarray  # (n_types, n_genes) log proportions
    dispersion: np.ndarray  # (n_genes,)
    studies: pd.DataFrame  # one row per study
    donors: pd.DataFrame  # one row per donor
    study_gene_scale: np.ndarray  # (n_studies, n_genes) multiplicative, 0 outside the panel
    donor_gene_scale: np.ndarray  # (n_donors, n_genes)
    cell_donor: np.ndarray  # (n_cells,) donor index
    cell_sample: np.ndarray  # (n_cells,) global sample index
    cell_type: np.ndarray  # (n_cells,) leaf type index
    samples: list[str] = field(default_factory=list)


def _type_profiles(genes: list[str], params: AtlasParams, rng: np.random.Generator) -> np.ndarray:
    """Log proportions per leaf type, grounded in pbmc68k means where a type has one."""
    n = len(genes)
    index = {g: i for i, g in enumerate(genes)}
    means = pbmc68k_type_means()
    pbmc_genes = [g for g in means.columns if g in index]
    pbmc_idx = np.array([index[g] for g in pbmc_genes])
    other = np.setdiff1d(np.arange(n), pbmc_idx)
    baseline = rng.normal(0.0, params.baseline_sd, n)
    anchor = means[pbmc_genes].mean(axis=0).to_numpy() / 1e4
    pbmc_share = float(anchor.sum())

    def normalise(logp: np.ndarray) -> np.ndarray:
        p = np.exp(logp - logp.max())
        logq: np.ndarray = np.log(p / p.sum())
        return logq

    def compose(on_pbmc: np.ndarray, on_other_log: np.ndarray) -> np.ndarray:
        out = np.empty(n)
        out[pbmc_idx] = np.log(np.maximum(on_pbmc, 1e-7))
        rest = np.exp(on_other_log - on_other_log.max())
        out[other] = np.log((1.0 - on_pbmc.sum()) * rest / rest.sum())
        return out

    profiles: dict[str, np.ndarray] = {}
    for spec in ATLAS_CELL_TYPES:
        if spec.pbmc_label is not None:
            real = means.loc[spec.pbmc_label, pbmc_genes].to_numpy() / 1e4
            logp = compose(real, baseline[other] + rng.normal(0, params.type_sd, len(other)))
        elif spec.base is not None:
            logp = profiles[spec.base] + rng.normal(0, params.subtype_sd, n)
        else:
            dev = rng.normal(0, params.type_sd, n)
            on_pbmc = anchor * np.exp(dev[pbmc_idx])
            on_pbmc *= pbmc_share / on_pbmc.sum()
            logp = compose(on_pbmc, baseline[other] + dev[other])
        p = np.exp(logp)
        for gene in spec.markers:
            if gene in index:
                p[index[gene]] = max(p[index[gene]], rng.uniform(*params.marker_share))
        profiles[spec.key] = normalise(np.log(p))
    return np.stack([profiles[spec.key] for spec in ATLAS_CELL_TYPES])


def _plan_studies(n_studies: int, params: AtlasParams, rng: np.random.Generator) -> pd.DataFrame:
    tissues = list(TISSUE_STUDY_WEIGHTS)
    weights = np.array([TISSUE_STUDY_WEIGHTS[t] for t in tissues])
    rows = []
    for s in range(n_studies):
        # The first studies cycle through tissues so small atlases still cover them all.
        tissue = tissues[s] if s < len(tissues) else tissues[rng.choice(len(tissues), p=weights)]
        rows.append(
            {
                "study_id": f"study{s:03d}",
                "tissue": tissue,
                "tissue_ontology_term_id": ATLAS_TISSUES[tissue],
                "granularity": GRANULARITIES[rng.integers(len(GRANULARITIES))],
                "assay_ontology_term_id": list(ATLAS_ASSAYS.values())[
                    rng.integers(len(ATLAS_ASSAYS))
                ],
                "case_control": bool(rng.random() < params.case_control_probability),
                "disease": TISSUE_DISEASES[tissue][rng.integers(len(TISSUE_DISEASES[tissue]))],
                "library_log_mean": rng.uniform(*params.library_log_mean),
                "dispersion_scale": rng.uniform(*params.study_dispersion_scale),
                "dropout": rng.uniform(*params.dropout),
                "ambient": rng.uniform(*params.ambient),
                "panel_fraction": rng.uniform(*params.panel_fraction),
                "size_weight": rng.uniform(0.5, 1.5),
            }
        )
    return pd.DataFrame(rows)


def _composition(tissue: str, disease: str) -> np.ndarray:
    shift = DISEASE_COMPOSITION.get(disease, {})
    w = np.array(
        [
            spec.tissue_weights.get(tissue, 0.0) * shift.get(spec.key, 1.0)
            for spec in ATLAS_CELL_TYPES
        ]
    )
    weights: np.ndarray = w / w.sum()
    return weights


def _design(n_cells: int, n_studies: int, seed: int, params: AtlasParams) -> _Design:
    if n_cells < 1 or n_studies < 1:
        msg = f"need n_cells >= 1 and n_studies >= 1, got {n_cells} and {n_studies}"
        raise ValueError(msg)
    rng = np.random.default_rng([seed, 0])
    genes = atlas_genes(params.n_genes)
    n_genes = len(genes)
    profiles = _type_profiles(genes, params, rng)
    dispersion = np.exp(rng.normal(params.dispersion_log_mean, params.dispersion_log_sd, n_genes))
    studies = _plan_studies(n_studies, params, rng)

    study_scale = np.exp(rng.normal(0, params.study_gene_sd, (n_studies, n_genes)))
    for s, frac in enumerate(studies["panel_fraction"]):
        study_scale[s, rng.random(n_genes) > frac] = 0.0

    sizes = studies["size_weight"].to_numpy()
    per_study = np.floor(sizes / sizes.sum() * n_cells).astype(np.int64)
    per_study[: n_cells - per_study.sum()] += 1

    donor_rows: list[dict[str, object]] = []
    cell_donor, cell_sample, cell_type = [], [], []
    samples: list[str] = []
    for s, study in studies.iterrows():
        n_donors = int(rng.integers(params.donors_per_study[0], params.donors_per_study[1] + 1))
        n_donors = max(1, min(n_donors, int(per_study[s])))
        donor_cells = rng.multinomial(per_study[s], np.full(n_donors, 1.0 / n_donors))
        for d in range(n_donors):
            diseased = study["case_control"] and d % 2 == 1
            disease = study["disease"] if diseased else NORMAL
            donor_index = len(donor_rows)
            donor_rows.append(
                {
                    "donor_id": f"{study['study_id']}-donor{d}",
                    "study": s,
                    "disease_ontology_term_id": disease,
                }
            )
            comp = rng.dirichlet(
                _composition(study["tissue"], disease) * params.composition_concentration + 1e-3
            )
            n_samples = int(
                rng.integers(params.samples_per_donor[0], params.samples_per_donor[1] + 1)
            )
            sample_cells = rng.multinomial(donor_cells[d], np.full(n_samples, 1.0 / n_samples))
            for k in range(n_samples):
                samples.append(f"{study['study_id']}-donor{d}-sample{k}")
                cell_donor.append(np.full(sample_cells[k], donor_index, dtype=np.int32))
                cell_sample.append(np.full(sample_cells[k], len(samples) - 1, dtype=np.int32))
                cell_type.append(
                    rng.choice(len(comp), size=sample_cells[k], p=comp).astype(np.int16)
                )
    donors = pd.DataFrame(donor_rows)
    donor_scale = np.exp(rng.normal(0, params.donor_gene_sd, (len(donors), n_genes)))
    return _Design(
        genes=genes,
        type_log_profiles=profiles,
        dispersion=dispersion,
        studies=studies,
        donors=donors,
        study_gene_scale=study_scale,
        donor_gene_scale=donor_scale,
        cell_donor=np.concatenate(cell_donor),
        cell_sample=np.concatenate(cell_sample),
        cell_type=np.concatenate(cell_type),
        samples=samples,
    )


# ---------------------------------------------------------------------------- counts


class _CountSampler:
    """Draws blocks of cells; caches each (donor, type) mean profile it has built."""

    def __init__(self, design: _Design, seed: int, params: AtlasParams) -> None:
        self.d = design
        self.seed = seed
        self.params = params
        self._profiles: dict[tuple[int, int], np.ndarray] = {}
        self._soups: dict[int, np.ndarray] = {}
        gene_index = {g: i for i, g in enumerate(design.genes)}
        self._programs = {
            disease: (np.array([gene_index[g] for g in genes if g in gene_index]), boost, immune)
            for disease, (genes, boost, immune) in DISEASE_PROGRAMS.items()
        }
        self._donor_study = design.donors["study"].to_numpy()
        self._lib_mean = design.studies["library_log_mean"].to_numpy()
        self._dropout = design.studies["dropout"].to_numpy()

    def _soup(self, study: int) -> np.ndarray:
        """The study's ambient RNA: its tissue's composition-weighted mean profile."""
        if study not in self._soups:
            d = self.d
            comp = _composition(str(d.studies.at[study, "tissue"]), NORMAL)
            p = comp @ np.exp(d.type_log_profiles) * d.study_gene_scale[study]
            self._soups[study] = p / p.sum()
        return self._soups[study]

    def _profile(self, donor: int, type_index: int) -> np.ndarray:
        key = (donor, type_index)
        if key not in self._profiles:
            d = self.d
            study = int(d.donors.at[donor, "study"])
            disease = d.donors.at[donor, "disease_ontology_term_id"]
            logp = d.type_log_profiles[type_index].copy()
            program = self._programs.get(disease)
            spec: CellTypeSpec = ATLAS_CELL_TYPES[type_index]
            if program is not None and len(program[0]) and (spec.immune or not program[2]):
                logp[program[0]] += program[1]
            # study x type interaction: the same type reads differently in each study
            interaction = np.random.default_rng([self.seed, 2, study, type_index]).normal(
                0.0, self.params.study_type_sd, len(logp)
            )
            p = np.exp(logp + interaction) * d.study_gene_scale[study] * d.donor_gene_scale[donor]
            p /= p.sum()
            ambient = float(d.studies.at[study, "ambient"])
            p = (1.0 - ambient) * p + ambient * self._soup(study)
            self._profiles[key] = (p / p.sum()).astype(np.float32)
        return self._profiles[key]

    def block(self, b: int, n_cells: int) -> sp.csr_matrix:
        """Cells ``b*_BLOCK`` onwards: NB counts, exact where a gene's mean is not tiny.

        Per (donor, type) group, genes whose mean at the group's library size is at least
        ``_DENSE_MU`` get dense Gamma-Poisson draws; the rest (most genes, mean < 0.1, where
        NB's extra variance phi*mu^2 is a few percent of mu) are drawn as Poisson counts by
        placing each cell's Poisson total over those genes, which costs O(counts), not O(genes).
        """
        lo, hi = b * _BLOCK, min(n_cells, (b + 1) * _BLOCK)
        d, p = self.d, self.params
        rng = np.random.default_rng([self.seed, 1, b])
        donors = d.cell_donor[lo:hi]
        types = d.cell_type[lo:hi]
        study_of_cell = self._donor_study[donors]
        library = np.exp(rng.normal(self._lib_mean[study_of_cell], p.library_log_sd))
        n_genes = len(d.genes)
        keys = donors.astype(np.int64) * 1000 + types
        rows_out: list[np.ndarray] = []
        cols_out: list[np.ndarray] = []
        vals_out: list[np.ndarray] = []
        for key in np.unique(keys):
            cells = np.flatnonzero(keys == key)
            donor, type_index = int(key // 1000), int(key % 1000)
            study = int(self._donor_study[donor])
            prof = self._profile(donor, type_index)
            lib = library[cells]
            dense = np.flatnonzero(prof * lib.mean() >= _DENSE_MU)
            # dense part: NB(mu, phi) as Poisson(Gamma(1/phi, mu*phi))
            mu = lib[:, None] * prof[dense][None, :]
            phi = d.dispersion[dense] * d.studies.at[study, "dispersion_scale"]
            lam = rng.standard_gamma(1.0 / phi, size=mu.shape, dtype=np.float32) * (mu * phi)
            counts = rng.poisson(lam).ravel()
            flat = np.flatnonzero(counts)
            r, c = np.divmod(flat, len(dense))
            rows_out.append(cells[r])
            cols_out.append(dense[c])
            vals_out.append(counts[flat])
            # sparse part: Poisson over the low-mean genes
            low = np.setdiff1d(np.arange(n_genes), dense, assume_unique=True)
            p_low = prof[low].astype(np.float64)
            share = p_low.sum()
            if share <= 0:
                continue
            totals = rng.poisson(lib * share)
            picks = np.searchsorted(np.cumsum(p_low / share), rng.random(int(totals.sum())))
            rows_out.append(np.repeat(cells, totals))
            cols_out.append(low[np.minimum(picks, len(low) - 1)])
            vals_out.append(np.ones(len(picks), dtype=np.int64))
        rows = np.concatenate(rows_out)
        X = sp.csr_matrix(
            (np.concatenate(vals_out).astype(np.float32), (rows, np.concatenate(cols_out))),
            shape=(hi - lo, n_genes),
        )
        X.sum_duplicates()
        dropout = self._dropout[study_of_cell]
        per_row = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
        lose = (X.data <= 2) & (rng.random(X.data.shape[0]) < dropout[per_row])
        if lose.any():
            X.data[lose] = 0
            X.eliminate_zeros()
        return X

    def blocks(self, n_cells: int) -> Iterator[tuple[int, sp.csr_matrix]]:
        for b in range((n_cells + _BLOCK - 1) // _BLOCK):
            yield b * _BLOCK, self.block(b, n_cells)


# ---------------------------------------------------------------------------- obs


def _obs_codes(design: _Design) -> dict[str, tuple[np.ndarray, list[str]]]:
    """Each obs column as (codes per cell, categories): compact for millions of cells."""
    d = design
    studies, donors = d.studies, d.donors
    study_of_donor = donors["study"].to_numpy()
    cell_study = study_of_donor[d.cell_donor]

    def encode(values: np.ndarray) -> tuple[np.ndarray, list[str]]:
        categories, codes = np.unique(values, return_inverse=True)
        return codes.astype(np.int32), [str(c) for c in categories]

    def via(table_values: list[str], index: np.ndarray) -> tuple[np.ndarray, list[str]]:
        categories = sorted(set(table_values))
        lookup = {c: i for i, c in enumerate(categories)}
        mapped = np.array([lookup[v] for v in table_values], dtype=np.int32)
        return mapped[index], categories

    n_types = len(ATLAS_CELL_TYPES)
    label_per_study_type = [
        study_label(ATLAS_CELL_TYPES[t], g) for g in studies["granularity"] for t in range(n_types)
    ]
    return {
        "cell_type_ontology_term_id": via(
            label_per_study_type, cell_study * n_types + d.cell_type.astype(np.int64)
        ),
        "true_cell_type_ontology_term_id": via(
            [s.ontology_id for s in ATLAS_CELL_TYPES], d.cell_type.astype(np.int64)
        ),
        "tissue_ontology_term_id": via(list(studies["tissue_ontology_term_id"]), cell_study),
        "disease_ontology_term_id": via(list(donors["disease_ontology_term_id"]), d.cell_donor),
        "assay_ontology_term_id": via(list(studies["assay_ontology_term_id"]), cell_study),
        "donor_id": via(list(donors["donor_id"]), d.cell_donor),
        "sample_id": via(d.samples, d.cell_sample),
        "study_id": via(list(studies["study_id"]), cell_study),
    }


def _cell_ids(start: int, stop: int, seed: int) -> np.ndarray:
    return np.array([f"sim{seed}-cell{i:09d}" for i in range(start, stop)], dtype=object)


def _var_frame(genes: list[str]) -> pd.DataFrame:
    table = human_gene_table().drop_duplicates("symbol").set_index("symbol")
    return pd.DataFrame(
        {"gene_id": table["gene_id"].reindex(genes).fillna("").to_numpy()},
        index=pd.Index(genes),
    )


def _study_table(design: _Design) -> pd.DataFrame:
    studies = design.studies.copy()
    studies["n_donors"] = design.donors.groupby("study").size().reindex(studies.index).to_numpy()
    cell_study = design.donors["study"].to_numpy()[design.cell_donor]
    studies["n_cells"] = np.bincount(cell_study, minlength=len(studies))
    return studies


# ---------------------------------------------------------------------------- public


def simulate_atlas(
    n_cells: int,
    n_studies: int,
    seed: int = 0,
    *,
    params: AtlasParams | None = None,
) -> ad.AnnData:
    """The atlas in memory (for tests and small training runs); same cells as :func:`make_atlas`."""
    params = params or AtlasParams()
    design = _design(n_cells, n_studies, seed, params)
    sampler = _CountSampler(design, seed, params)
    X = sp.vstack([block for _, block in sampler.blocks(n_cells)], format="csr")
    obs = pd.DataFrame(
        {
            name: pd.Categorical.from_codes(codes, categories=cats)
            for name, (codes, cats) in _obs_codes(design).items()
        },
        index=pd.Index(_cell_ids(0, n_cells, seed)),
    )
    adata = ad.AnnData(X=X.astype(np.float32), obs=obs, var=_var_frame(design.genes))
    adata.uns["simulation"] = {"seed": seed, "n_studies": n_studies, **_params_uns(params)}
    adata.uns["studies"] = _study_table(design).astype({"case_control": str})
    return adata


def _params_uns(params: AtlasParams) -> dict[str, object]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(params).items()}


def make_atlas(
    path: Path,
    *,
    n_cells: int,
    n_studies: int,
    seed: int = 0,
    chunk_size: int = 50_000,
    params: AtlasParams | None = None,
) -> AtlasSummary:
    """Write the atlas to an .h5ad chunk by chunk, never holding its matrix in memory.

    X is a CSR matrix appended to resizable h5py datasets; obs columns are categorical codes
    and cell ids appended the same way, in anndata's on-disk encoding, so
    ``anndata.read_h5ad`` (and :func:`celldata.read.iter_chunks`) read it back.
    """
    params = params or AtlasParams()
    started = time.perf_counter()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    design = _design(n_cells, n_studies, seed, params)
    sampler = _CountSampler(design, seed, params)
    codes = _obs_codes(design)
    tmp = path.with_suffix(path.suffix + ".partial")
    nnz = 0
    with h5py.File(tmp, "w") as f:
        writer = _H5adWriter(f, n_cells, design.genes, codes)
        pending: list[sp.csr_matrix] = []
        pending_start = 0
        pending_rows = 0
        for start, block in sampler.blocks(n_cells):
            if not pending:
                pending_start = start
            pending.append(block)
            pending_rows += block.shape[0]
            if pending_rows >= chunk_size:
                nnz += writer.append(sp.vstack(pending, format="csr"), pending_start, seed)
                pending, pending_rows = [], 0
        if pending:
            nnz += writer.append(sp.vstack(pending, format="csr"), pending_start, seed)
        writer.finish(_var_frame(design.genes))
        anndata_uns(f, seed, n_studies, params, _study_table(design))
    tmp.replace(path)
    return AtlasSummary(
        path=path,
        n_cells=n_cells,
        n_genes=len(design.genes),
        n_studies=n_studies,
        n_donors=len(design.donors),
        nnz=nnz,
        seconds=time.perf_counter() - started,
        studies=_study_table(design),
    )


def anndata_uns(
    f: h5py.File, seed: int, n_studies: int, params: AtlasParams, studies: pd.DataFrame
) -> None:
    """Write ``uns['simulation']`` and ``uns['studies']`` through anndata's element writer."""
    from anndata.io import write_elem

    simulation = {"seed": seed, "n_studies": n_studies, **_params_uns(params)}
    uns = {"simulation": simulation, "studies": studies.astype({"case_control": str})}
    write_elem(f, "uns", uns)
    for key in ("obsm", "varm", "obsp", "varp", "layers"):
        write_elem(f, key, {})


class _H5adWriter:
    """Appends CSR rows and obs rows to an .h5ad laid out as anndata writes it."""

    def __init__(
        self,
        f: h5py.File,
        n_cells: int,
        genes: list[str],
        codes: dict[str, tuple[np.ndarray, list[str]]],
    ) -> None:
        from anndata.io import write_elem

        self.f = f
        self.codes = codes
        f.attrs["encoding-type"] = "anndata"
        f.attrs["encoding-version"] = "0.1.0"
        X = f.create_group("X")
        X.attrs["encoding-type"] = "csr_matrix"
        X.attrs["encoding-version"] = "0.1.0"
        X.attrs["shape"] = np.array([n_cells, len(genes)], dtype=np.int64)
        self.data = X.create_dataset("data", (0,), np.float32, maxshape=(None,), chunks=(1 << 18,))
        self.indices = X.create_dataset(
            "indices", (0,), np.int32, maxshape=(None,), chunks=(1 << 18,)
        )
        self.indptr = X.create_dataset("indptr", (n_cells + 1,), np.int64)
        self.indptr[0] = 0
        obs = f.create_group("obs")
        obs.attrs["encoding-type"] = "dataframe"
        obs.attrs["encoding-version"] = "0.2.0"
        obs.attrs["_index"] = "_index"
        obs.attrs["column-order"] = np.array(list(codes), dtype=object)
        str_dtype = h5py.string_dtype("utf-8")
        self.index = obs.create_dataset("_index", (n_cells,), dtype=str_dtype)
        self.index.attrs["encoding-type"] = "string-array"
        self.index.attrs["encoding-version"] = "0.2.0"
        for name, (column_codes, categories) in codes.items():
            group = obs.create_group(name)
            group.attrs["encoding-type"] = "categorical"
            group.attrs["encoding-version"] = "0.2.0"
            group.attrs["ordered"] = False
            write_elem(group, "categories", np.array(categories, dtype=object))
            code_dtype = np.int8 if len(categories) < 127 else np.int32
            write_elem(group, "codes", column_codes.astype(code_dtype))
        self.n_written = 0

    def append(self, X: sp.csr_matrix, start: int, seed: int) -> int:
        n, nnz0 = X.shape[0], self.data.shape[0]
        self.data.resize((nnz0 + X.nnz,))
        self.indices.resize((nnz0 + X.nnz,))
        self.data[nnz0:] = X.data.astype(np.float32, copy=False)
        self.indices[nnz0:] = X.indices.astype(np.int32, copy=False)
        self.indptr[start + 1 : start + n + 1] = X.indptr[1:].astype(np.int64) + nnz0
        self.index[start : start + n] = _cell_ids(start, start + n, seed)
        self.n_written += n
        return int(X.nnz)

    def finish(self, var: pd.DataFrame) -> None:
        from anndata.io import write_elem

        write_elem(self.f, "var", var)
