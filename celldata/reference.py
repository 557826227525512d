"""A training reference as it comes: several files, a folder, one study per file or a column.

``cellsearch train`` takes whatever a user has: one .h5ad with a ``study_id`` column, a folder
of per-study files, or a list of files. Every file is read with the same rule ingestion uses
(:func:`celldata.read.read_whole`: raw counts from ``layers["counts"]``, ``X`` or ``.raw``,
log-normalised matrices refused), so a model is trained on exactly what it will later embed.

Genes: files from different studies rarely list the same genes. The reference keeps the genes
measured in every file (their intersection, in the first file's order); a gene missing from one
study would otherwise read zero there and teach the encoder a study effect. When the
intersection is too small to train on, the union is used instead and the report says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from celldata.errors import UnreadableFileError
from celldata.genes import align_genes
from celldata.read import read_whole

#: Fewer shared genes than this (or than half the smallest file) and the union is used.
MIN_SHARED_GENES = 500
READABLE_SUFFIXES = (".h5ad",)


@dataclass
class ReferenceReport:
    """What was read, for the summary ``cellsearch train`` prints."""

    files: list[Path]
    cells: int
    genes: int
    studies: list[str]
    gene_rule: str
    study_source: dict[str, str] = field(default_factory=dict)
    """file -> where its study ids came from (``column`` or ``file name``)."""


def reference_files(paths: Sequence[str | Path]) -> list[Path]:
    """Expand folders into their .h5ad files (sorted); refuse what is not there."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in READABLE_SUFFIXES)
            if not found:
                msg = f"{path} holds no .h5ad file"
                raise UnreadableFileError(msg)
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            msg = f"{path}: no such file or folder"
            raise UnreadableFileError(msg)
    if not files:
        msg = "no reference file given"
        raise UnreadableFileError(msg)
    return files


def _shared_genes(var_names: list[pd.Index]) -> tuple[list[str], str]:
    first = [str(g) for g in var_names[0]]
    if len(var_names) == 1:
        return first, "the file's genes"
    common = set(first)
    for names in var_names[1:]:
        common &= {str(g) for g in names}
    smallest = min(len(v) for v in var_names)
    if len(common) >= min(MIN_SHARED_GENES, smallest // 2):
        return [g for g in first if g in common], f"the {len(common)} genes every file measures"
    union = list(dict.fromkeys(str(g) for names in var_names for g in names))
    return union, (
        f"the union of {len(union)} genes (only {len(common)} are in every file; genes a file "
        "lacks read zero there)"
    )


def read_reference(
    paths: Sequence[str | Path],
    *,
    study_key: str = "study_id",
    label_key: str = "cell_type_ontology_term_id",
) -> tuple[ad.AnnData, ReferenceReport]:
    """All reference cells as one AnnData of raw counts with ``label_key`` and ``study_key``.

    A file without a ``study_key`` column is one study named after the file (its stem). Cell
    names are made unique across files by prefixing the study when they collide.
    """
    files = reference_files(paths)
    chunks = [read_whole(f) for f in files]
    genes, gene_rule = _shared_genes([c.var_names for c in chunks])
    xs, obs_parts, source = [], [], {}
    for path, chunk in zip(files, chunks, strict=True):
        if label_key not in chunk.obs.columns:
            msg = (
                f"{path} has no {label_key!r} column to train on "
                f"(columns: {list(chunk.obs.columns)[:12]})"
            )
            raise UnreadableFileError(msg)
        obs = chunk.obs.copy()
        if study_key in obs.columns:
            source[str(path)] = "column"
            obs[study_key] = obs[study_key].astype(str)
        else:
            source[str(path)] = "file name"
            obs[study_key] = path.stem
        # The platform's one alignment rule (symbols or Ensembl ids, copies summed, absent
        # genes zero); every gene set here is a subset of ``genes``, so no overlap minimum.
        xs.append(sp.csr_matrix(align_genes(chunk.var_names, genes, min_overlap=0).apply(chunk.X)))
        obs_parts.append(obs)
    obs = pd.concat(obs_parts)
    obs.index = obs.index.astype(str)
    if not obs.index.is_unique:
        obs.index = pd.Index(obs[study_key].astype(str) + "/" + obs.index.to_series())
    if not obs.index.is_unique:
        obs.index = pd.Index([f"{name}#{i}" for i, name in enumerate(obs.index)])
    for key in (label_key, study_key):
        obs[key] = obs[key].astype(str)
    adata = ad.AnnData(
        X=sp.vstack(xs, format="csr").astype(np.float32),
        obs=obs,
        var=pd.DataFrame(index=pd.Index(genes)),
    )
    report = ReferenceReport(
        files=files,
        cells=adata.n_obs,
        genes=adata.n_vars,
        studies=sorted(set(obs[study_key])),
        gene_rule=gene_rule,
        study_source=source,
    )
    return adata, report
