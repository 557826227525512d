"""Validate a dataset against the input contract before anything is written.

Checks run cheapest first and stop at the first failure, raising the specific
:class:`~celldata.errors.DataValidationError` subclass whose message names the column, cell
or gene at fault and says what to do:

1. the file opens (truncated/corrupt files fail here);
2. it has cells, and raw counts somewhere (a quick sample first: negative, non-integer,
   log-normalised), then **every** cell in the streamed pass: NaN/inf, negative,
   non-integer and absurd (> 2**24) values, each with its own code;
3. genes: not mouse, and enough overlap with the model's vocabulary;
4. cell ids are non-empty and unique (all cells, via 64-bit hashes: flat memory);
5. no empty cells (all cells, from ``indptr`` and per-chunk sums);
6. required obs columns exist and have no missing values;
7. ontology ids in ``*_ontology_term_id`` columns are known, current and of the right kind;
   assay ids (``assay_ontology_term_id``) are known EFO terms.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from celldata.counts import check_raw_counts
from celldata.errors import (
    DuplicateCellIdsError,
    EmptyCellIdError,
    EmptyCellsError,
    MissingMetadataError,
    NotRawCountsError,
    ObsoleteTermError,
    UnknownTermError,
)
from celldata.genes import GeneAlignment, align_genes, check_species
from celldata.read import CellChunk, DatasetInfo, iter_chunks, read_metadata

TERM_COLUMNS: dict[str, str] = {
    "cell_type_ontology_term_id": "cell_type",
    "tissue_ontology_term_id": "tissue",
    "disease_ontology_term_id": "disease",
}
REFERENCE_OBS: tuple[str, ...] = (
    "cell_type_ontology_term_id",
    "tissue_ontology_term_id",
    "disease_ontology_term_id",
    "donor_id",
)
"""What a labelled reference study must carry. Query datasets pass ``required_obs=()``."""
_MISSING_STRINGS = frozenset({"", "nan", "none", "na", "unknown"})
#: CELLxGENE's schema writes ``unknown`` for a cell without a type: such cells are valid
#: (stored and searchable; annotation never lets them vote), not missing metadata.
UNKNOWN_CELL_TYPE = "unknown"
_UNKNOWN_ALLOWED = frozenset({"cell_type_ontology_term_id"})


@dataclass
class ValidationReport:
    """What passed: shape, where counts live, gene alignment and the terms checked."""

    path: Path
    n_cells: int
    n_genes: int
    counts_location: str
    alignment: GeneAlignment | None
    obs_columns: list[str]
    terms: dict[str, list[str]] = field(default_factory=dict)
    """Distinct ontology ids per term column."""

    @property
    def n_genes_matched(self) -> int | None:
        return None if self.alignment is None else self.alignment.n_matched


ASSAY_COLUMN = "assay_ontology_term_id"


def _sampled_chunks(path: Path, info: DatasetInfo, sample_cells: int) -> list[CellChunk]:
    """A few windows spread over the file, ``sample_cells`` cells in all."""
    n = info.n_cells
    if n <= sample_cells:
        return list(iter_chunks(path, chunk_size=max(1, n), counts=info.counts_location))  # type: ignore[arg-type]
    windows = 4
    size = max(1, sample_cells // windows)
    starts = np.linspace(0, n - size, windows).astype(int)
    return [
        next(iter_chunks(path, chunk_size=size, counts=info.counts_location, start=int(s)))  # type: ignore[arg-type]
        for s in starts
    ]


def _check_counts(path: Path, info: DatasetInfo, sample_cells: int) -> None:
    if not info.counts_location:
        # No location passed the quick look: read X (or the first matrix) to say exactly why.
        location = "X" if "X" in info.locations else info.locations[0]
        sample = next(
            iter_chunks(path, chunk_size=min(sample_cells, info.n_cells), counts=location)  # type: ignore[arg-type]
        )
        check_raw_counts(sample.X.data, where=str(path), location=location)
        msg = f"{path}: no raw counts found in {', '.join(info.locations)}"
        raise NotRawCountsError(msg)
    for chunk in _sampled_chunks(path, info, sample_cells):
        check_raw_counts(chunk.X.data, where=str(path), location=info.counts_location)


def _check_duplicates(hashes: list[np.ndarray], path: Path) -> None:
    all_hashes = np.concatenate(hashes) if hashes else np.zeros(0, dtype=np.uint64)
    order = np.argsort(all_hashes, kind="stable")
    sorted_hashes = all_hashes[order]
    dup = np.flatnonzero(sorted_hashes[1:] == sorted_hashes[:-1])
    if dup.size:
        positions = np.sort(np.unique(np.concatenate([order[dup], order[dup + 1]])))
        rows = positions[:5]
        names = []
        for r in rows:
            chunk = next(iter_chunks(path, chunk_size=1, start=int(r)))
            names.append(str(chunk.obs.index[0]))
        msg = (
            f"{path}: {dup.size} duplicated cell id(s), e.g. {names[0]!r} at rows "
            f"{', '.join(str(int(r)) for r in rows)}. Cell ids (obs_names) must be unique "
            "within a dataset: make them unique (e.g. prefix the sample id) and resubmit"
        )
        raise DuplicateCellIdsError(msg, details={"n_duplicates": int(dup.size), "examples": names})


def _check_cell_ids(chunk: CellChunk, path: Path) -> None:
    ids = chunk.obs.index.to_numpy(dtype=object)
    empty = np.fromiter((not str(c).strip() for c in ids), dtype=bool, count=len(ids))
    if empty.any():
        row = chunk.start + int(np.flatnonzero(empty)[0])
        msg = (
            f"{path}: {int(empty.sum())} cell(s) have an empty id (obs_names), first at row "
            f"{row}; every cell needs a unique, non-empty id (e.g. its barcode)"
        )
        raise EmptyCellIdError(msg, details={"row": row})


def verify_assays(values: set[str], path: Path | str) -> list[str]:
    """Assay ids must be EFO terms the CELLxGENE ontology knows (and not deprecated)."""
    parser = _assay_parser()
    for term in sorted(values):
        known = term.startswith("EFO:") and parser.is_valid_term_id(term)
        if not known or parser.is_term_deprecated(term):
            why = "deprecated" if known else "not a known EFO assay term"
            msg = (
                f"{path}: column {ASSAY_COLUMN!r} has {term!r}, {why}. Use CELLxGENE assay "
                "ids such as EFO:0009922 (10x 3' v3) or EFO:0009899 (10x 3' v2)"
            )
            raise UnknownTermError(msg, details={"column": ASSAY_COLUMN, "term": term})
    return sorted(values)


@functools.cache
def _assay_parser() -> Any:
    from cellxgene_ontology_guide.ontology_parser import OntologyParser

    return OntologyParser()


def _missing_mask(values: pd.Series, column: str = "") -> np.ndarray:
    as_str = values.astype(str).str.strip().str.lower()
    missing = (
        _MISSING_STRINGS - {UNKNOWN_CELL_TYPE} if column in _UNKNOWN_ALLOWED else _MISSING_STRINGS
    )
    mask: np.ndarray = (values.isna() | as_str.isin(missing)).to_numpy()
    return mask


def verify_terms(values_by_column: dict[str, set[str]], path: Path | str) -> dict[str, list[str]]:
    """Check ontology ids in term columns with the ontology package; return them sorted.

    Raises :class:`UnknownTermError` for malformed, unknown or wrong-kind ids (a tissue id in
    the cell type column) and :class:`ObsoleteTermError` naming the replacement if any.
    """
    import ontology

    checked: dict[str, list[str]] = {}
    for column, values in values_by_column.items():
        kind = TERM_COLUMNS[column]
        for term in sorted(values):
            try:
                term_kind = ontology.kind_of(term)
                onto = ontology.get_ontology(term_kind)
                onto.label(term)
            except ontology.OntologyError as exc:
                msg = (
                    f"{path}: column {column!r} has {term!r}, which is not a known {kind} term "
                    f"({exc}). Use ids like CL:0000236 / UBERON:0002048 / MONDO:0015925, or "
                    "submit free-text labels with a mapping file (ontology.map_labels)"
                )
                raise UnknownTermError(msg, details={"column": column, "term": term}) from exc
            if term_kind != kind:
                msg = (
                    f"{path}: column {column!r} has {term!r}, a {term_kind} term, where a {kind} "
                    "term belongs; check that the columns are not swapped"
                )
                raise UnknownTermError(msg, details={"column": column, "term": term})
            if onto.is_obsolete(term):
                replacement = onto.replaced_by(term)
                advice = (
                    f"replace it with {replacement}"
                    if replacement
                    else "replace it with a current term (the ontology names no replacement)"
                )
                msg = (
                    f"{path}: column {column!r} uses obsolete term {term!r} "
                    f"({onto.label(term)!r}); {advice} and resubmit"
                )
                raise ObsoleteTermError(
                    msg, details={"column": column, "term": term, "replaced_by": replacement}
                )
        checked[column] = sorted(values)
    return checked


def validate_dataset(
    path: Path,
    *,
    vocabulary: Sequence[str] | None = None,
    min_gene_overlap: int | float = 0.5,
    required_obs: Sequence[str] = REFERENCE_OBS,
    check_terms: bool = True,
    sample_cells: int = 2000,
    chunk_size: int = 8192,
    defaults: Mapping[str, str] | None = None,
) -> ValidationReport:
    """Run every check of the input contract on ``path``; raise on the first failure.

    ``vocabulary`` is the model's gene list (symbols); without it only the species is
    checked. ``min_gene_overlap`` is a count (int) or a share of the vocabulary (float).
    Reading is streamed, so memory stays flat whatever the file size.
    """
    path = Path(path)
    info = read_metadata(path)
    if info.n_cells == 0:
        msg = f"{path} has no cells (0 rows); nothing to ingest. Check the export step"
        raise EmptyCellsError(msg)
    _check_counts(path, info, sample_cells)

    alignment = None
    if vocabulary is not None:
        alignment = align_genes(info.var_names, vocabulary, min_overlap=min_gene_overlap)
    else:
        check_species(info.var_names)

    # metadata defaults given at submission fill the columns the file lacks (and only those)
    filled = {
        c: str(v) for c, v in (defaults or {}).items() if c not in info.obs_columns and str(v)
    }
    missing_columns = [c for c in required_obs if c not in info.obs_columns and c not in filled]
    if missing_columns:
        msg = (
            f"{path}: required obs column(s) {', '.join(repr(c) for c in missing_columns)} are "
            f"missing (present: {', '.join(info.obs_columns) or 'none'}). Add them with "
            "CELLxGENE names, or map free-text labels with ontology.map_labels first"
        )
        raise MissingMetadataError(msg, details={"columns": missing_columns})

    hashes: list[np.ndarray] = []
    empty_rows: list[int] = []
    term_values: dict[str, set[str]] = {c: set() for c in TERM_COLUMNS if c in info.obs_columns}
    assays: set[str] = set()
    for chunk in iter_chunks(path, chunk_size=chunk_size, counts=info.counts_location):  # type: ignore[arg-type]
        # every cell, not a sample: a defect at any row fails here, before anything is stored
        where = f"{path} (cells {chunk.start}-{chunk.start + chunk.n_cells - 1})"
        check_raw_counts(chunk.X.data, where=where, location=info.counts_location)
        _check_cell_ids(chunk, path)
        if ASSAY_COLUMN in chunk.obs.columns:
            assays.update(str(v) for v in pd.unique(chunk.obs[ASSAY_COLUMN].astype(str)))
        hashes.append(pd.util.hash_array(chunk.obs.index.to_numpy(dtype=object)))
        sums = np.asarray(chunk.X.sum(axis=1)).ravel()
        if len(empty_rows) < 5:
            empty_rows.extend((chunk.start + np.flatnonzero(sums <= 0)).tolist())
        elif (sums <= 0).any():
            empty_rows.append(-1)  # counted, not named
        for column in required_obs:
            if column in filled:
                continue
            missing = _missing_mask(chunk.obs[column], column)
            if missing.any():
                row = int(np.flatnonzero(missing)[0])
                msg = (
                    f"{path}: required obs column {column!r} is empty for cell "
                    f"{chunk.obs.index[row]!r} (row {chunk.start + row}) and "
                    f"{int(missing.sum()) - 1} more in this chunk of {chunk.n_cells} cells. "
                    "Fill it in for every cell, or drop the cells without it"
                )
                raise MissingMetadataError(
                    msg, details={"column": column, "row": chunk.start + row}
                )
        for column, seen in term_values.items():
            seen.update(str(v) for v in pd.unique(chunk.obs[column].astype(str)))
            if column in _UNKNOWN_ALLOWED:
                seen.discard(UNKNOWN_CELL_TYPE)  # CELLxGENE's "no type": no term to look up

    _check_duplicates(hashes, path)
    if empty_rows:
        named = [r for r in empty_rows if r >= 0][:5]
        count = f"{len(empty_rows)}+" if len(empty_rows) > 5 else str(len(empty_rows))
        msg = (
            f"{path}: {count} cell(s) have zero counts, at rows {', '.join(map(str, named))}. "
            "Filter them out (keep cells with total counts >= 1, as "
            "scanpy.pp.filter_cells(min_counts=1) does) and resubmit"
        )
        raise EmptyCellsError(msg, details={"rows": named})

    for column, value in filled.items():
        if column in TERM_COLUMNS:
            term_values[column] = {value}
    terms: dict[str, list[str]] = {}
    if check_terms and term_values:
        terms = verify_terms(term_values, path)
    if check_terms and assays:
        terms[ASSAY_COLUMN] = verify_assays(assays, path)
    return ValidationReport(
        path=path,
        n_cells=info.n_cells,
        n_genes=info.n_genes,
        counts_location=info.counts_location,
        alignment=alignment,
        obs_columns=info.obs_columns,
        terms=terms,
    )
