"""The in-process API: an atlas in a folder, used from a notebook with no server and no Redis.

    >>> import cellsearch
    >>> atlas = cellsearch.Atlas("my-atlas")            # the bundled model unless model=
    >>> atlas.ingest(reference, study="smith2024")       # AnnData or .h5ad path; progress bar
    >>> hits = atlas.search(query[:5], k=20, filter={"tissues": ["lung"]})
    >>> labels = atlas.annotate(query, key_added="cellsearch")   # writes obs/obsm/uns too

AnnData in, DataFrames out, the way SCimilarity's ``CellQuery``/``CellAnnotation`` and
scvi-tools' models are used. Every call runs the same core as the gRPC service (the
ingestion pipeline, the filtered query planner, the ontology-consistent vote), and
:class:`~cellsearch.client.CellSearchClient` offers the same methods over gRPC with the
same return types. The folder holds the embedded store (``store/``), its job records and
dataset registry (``store.jobs.sqlite3``) and a copy of each ingested AnnData (``inbox/``,
what a re-embed reads): a server started with ``CELLSEARCH_STORE_PATH=<folder>/store``
serves the same atlas.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cellsearch.ingest import pipeline
from cellsearch.ingest.runner import ingest_options
from cellsearch.ingest.submit import default_dataset_id, submit_ingestion
from cellsearch.platform import schema
from cellsearch.platform.datasets import delete_dataset
from cellsearch.platform.errors import InvalidRequestError, JobFailedError
from cellsearch.platform.factories import load_encoder, open_store
from cellsearch.platform.jobs import Job, JobState, SqliteJobStore
from cellsearch.platform.settings import Settings, get_settings
from cellsearch.search import engine, frames
from cellsearch.search import query as core_query
from cellsearch.search.filters import FilterSpec
from vectorstore import DIM

if TYPE_CHECKING:
    from encoder import CellEncoder

FilterLike = Mapping[str, Any] | FilterSpec | None
CellRef = str | tuple[str, str]

#: Characters allowed in the file name of an ingested AnnData's copy.
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def make_filter_spec(spec: FilterLike) -> FilterSpec | None:
    """A :class:`FilterSpec` from a dict keyed by the proto ``Filter``'s field names
    (``{"tissues": ["lung"], "exclude_cell_types": "T cell"}``); one string stands for a
    one-item list. Unknown keys are refused with the valid ones."""
    if spec is None or isinstance(spec, FilterSpec):
        return spec
    keys = {f.name for f in fields(FilterSpec)}
    unknown = sorted(set(spec) - keys)
    if unknown:
        msg = f"unknown filter keys {unknown}; use {[*schema.FILTER_LISTS, *schema.FILTER_FLAGS]}"
        raise InvalidRequestError(msg)
    values: dict[str, Any] = {}
    for key, value in spec.items():
        if key in schema.FILTER_FLAGS:
            values[key] = bool(value)
        elif key == "model_version":
            values[key] = str(value)
        else:
            values[key] = (value,) if isinstance(value, str) else tuple(value)
    return FilterSpec(**values)


@dataclass(frozen=True)
class _Query:
    """A query decoded: vectors (given or embedded) or stored cells, and each cell's name."""

    names: list[str]
    vectors: np.ndarray | None = None
    cells: list[CellRef] | None = None


class Atlas:
    """An embedded atlas: ingest, search, annotate and embed, all in this process.

    ``path``: the atlas folder (created if missing); None opens the store the settings name
    (``CELLSEARCH_STORE_PATH``). ``model``: a ``CellEncoder``, a checkpoint folder, or None
    for the configured model (``CELLSEARCH_MODEL_DIR``, else the bundled default). One
    process may open an atlas at a time (the embedded store is locked); close it, or use it
    as a context manager, before a server opens the same folder.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        model: CellEncoder | str | Path | None = None,
        *,
        settings: Settings | None = None,
    ) -> None:
        settings = settings or get_settings()
        if path is not None:
            settings = settings.model_copy(update={"store_path": Path(path) / "store"})
        self.settings = settings
        self.path = settings.store_path.parent
        self.store = open_store(settings)
        try:
            self.jobs = SqliteJobStore.for_settings(settings)
        except BaseException:
            self.store.close()
            raise
        self._model = model
        self._encoder: CellEncoder | None = None
        self.limits = engine.limits_of(settings)
        self._annotator = engine.Annotator(
            held_out=lambda: self.encoder.training.get("held_out_distances")
        )

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Release the store and the job records (the folder can then be opened elsewhere)."""
        self.jobs.close()
        self.store.close()

    def __enter__(self) -> Atlas:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Atlas({str(self.path)!r}, cells={self.store.count()})"

    @property
    def encoder(self) -> CellEncoder:
        """The model that embeds cells here (loaded on first use)."""
        if self._encoder is None:
            model = self._model
            if model is None:
                self._encoder = load_encoder(self.settings)
            elif isinstance(model, str | Path):
                from encoder import CellEncoder

                self._encoder = CellEncoder.load(model)
            else:
                self._encoder = model
        return self._encoder

    # ------------------------------------------------------------------ ingestion
    def ingest(
        self,
        data: Any,
        *,
        study: str = "",
        dataset: str | None = None,
        metadata: Mapping[str, str] | None = None,
        progress: bool = True,
    ) -> Job:
        """Embed and store every cell of an AnnData or an .h5ad file; returns the finished job.

        The cells are validated first (raw counts, gene overlap, ontology terms, unique ids)
        and nothing is stored when one is refused (:class:`JobFailedError` says which).
        ``metadata`` fills obs columns the data lacks (``tissue_ontology_term_id=...``).
        ``study``: the study of every cell; without it the data's own ``study_id`` column says
        each cell's (a multi-study reference in one file). An AnnData is copied into the atlas
        folder (``inbox/``) so it can be re-embedded.
        """
        if isinstance(data, str | Path):
            path = Path(data).resolve()
        else:
            path = self._keep_copy(data, study=study, dataset=dataset)
        job = submit_ingestion(
            self.jobs,
            lambda job_id: None,  # runs right here, below
            path=str(path),
            study_id=study,
            dataset_id=dataset or default_dataset_id(study, path),
            metadata=metadata,
            allowed_roots=(path.parent,),
            max_metadata_entries=self.settings.max_metadata_entries,
            max_metadata_bytes=self.settings.max_metadata_bytes,
        )
        bar = _progress(show=progress, desc=f"ingest {job.dataset_id}")

        def report(current: Job) -> None:
            if bar is not None:
                bar.total = current.cells_total or bar.total
                bar.update(current.cells_done - bar.n)

        try:
            done = pipeline.ingest(
                job.job_id,
                jobs=self.jobs,
                store=self.store,
                encoder=self.encoder,
                options=ingest_options(
                    self.settings, allowed_roots=(path.parent,), on_progress=report
                ),
            )
        finally:
            if bar is not None:
                bar.close()
        if done.state is not JobState.SUCCEEDED:
            raise JobFailedError(done.job_id, done.error_code, done.error)
        return done

    def _keep_copy(self, adata: Any, *, study: str, dataset: str | None) -> Path:
        """Write an in-memory AnnData where the pipeline reads files (inside the atlas)."""
        if not (hasattr(adata, "obs_names") and hasattr(adata, "write_h5ad")):
            msg = f"ingest takes an AnnData or an .h5ad path, got {type(adata).__name__}"
            raise InvalidRequestError(msg)
        inbox = self.path / "inbox"
        inbox.mkdir(parents=True, exist_ok=True)
        # unique without a dataset id: a count of datasets would reuse a deleted one's number
        # and overwrite the copy another registered dataset still reads when re-embedded
        name = _SAFE_NAME.sub("_", dataset or f"{study or 'dataset'}_{uuid.uuid4().hex[:12]}")
        path = inbox / f"{name}.h5ad"
        adata.write_h5ad(path)
        return path

    def list_datasets(self) -> pd.DataFrame:
        """One row per ingested dataset: ids, cells, genes matched, model, when."""
        return pd.DataFrame([vars(d) for d in self.jobs.list_datasets()])

    def delete_dataset(self, dataset_id: str) -> int:
        """Remove a dataset (points, registry entry, id claim); returns the cells removed."""
        return delete_dataset(dataset_id, jobs=self.jobs, store=self.store)

    # ------------------------------------------------------------------ queries
    def embed(
        self, data: Any, *, genes: Sequence[str] | None = None, layer: str | None = None
    ) -> np.ndarray:
        """Unit vectors ``(n_cells, 128)`` of raw counts: an AnnData (counts found by
        ``layers["counts"]`` > ``.raw`` > ``X``, or ``layer=``) or a matrix with ``genes``."""
        if _is_anndata(data):
            from celldata.counts import counts_of

            counts = counts_of(data, layer, where="the AnnData")
            return self.encoder.embed(counts.matrix, gene_names=counts.var_names)
        if genes is None:
            msg = "a count matrix needs genes= naming its columns (or pass an AnnData)"
            raise InvalidRequestError(msg)
        return self.encoder.embed(data, gene_names=list(genes))

    def search(
        self,
        query: Any,
        *,
        k: int = 50,
        filter: FilterLike = None,
        genes: Sequence[str] | None = None,
        layer: str | None = None,
        fields: Sequence[str] = (),
        with_vectors: bool = False,
    ) -> pd.DataFrame:
        """The ``k`` most similar stored cells to each query cell, as one long frame: a row
        per (query cell, hit) with the query cell's name, rank, score, distance and the
        hit's metadata and labels.

        ``query``: an AnnData; raw counts with ``genes``; an ``(n, 128)`` embedding matrix;
        or stored cells (ids or ``(dataset_id, cell_id)`` pairs, never found in their own
        results). ``filter``: keys of the proto ``Filter`` (``tissues``, ``diseases``,
        ``exclude_cell_types``, ``studies``, ``exact_terms``, ...); terms by id or name.
        """
        q = self._decode(query, genes, layer)
        results = engine.search(
            self.store,
            vectors=q.vectors,
            cells=q.cells or [],
            k=k,
            spec=make_filter_spec(filter),
            limits=self.limits,
            with_vectors=with_vectors,
        )
        return frames.core_hits_frame(q.names, results, fields, with_vectors=with_vectors)

    def search_centroid(
        self,
        query: Any,
        *,
        k: int = 50,
        filter: FilterLike = None,
        genes: Sequence[str] | None = None,
        layer: str | None = None,
        fields: Sequence[str] = (),
    ) -> tuple[pd.DataFrame, float]:
        """The cells nearest the query population's centroid, and its coherence in [0, 1]
        (near 0: the query cells are unrelated states and the centroid describes none)."""
        q = self._decode(query, genes, layer)
        result = engine.search_centroid(
            self.store,
            vectors=q.vectors,
            cells=q.cells or [],
            k=k,
            spec=make_filter_spec(filter),
            limits=self.limits,
            with_vectors=False,
        )
        hits = frames.core_hits_frame(["centroid"], [result.hits], fields)
        return hits.drop(columns="query"), float(result.coherence or 0.0)

    def annotate(
        self,
        query: Any,
        *,
        k: int = 0,
        filter: FilterLike = None,
        genes: Sequence[str] | None = None,
        layer: str | None = None,
        key_added: str | None = None,
        unknown_quantile: float | None = None,
        with_neighbours: bool = False,
        batch_size: int = 10_000,
        progress: bool = False,
    ) -> pd.DataFrame:
        """Cell type per query cell by kNN over the atlas's labelled cells, one row per cell
        indexed by its name: label id and name, confidence, the finest competing label, vote
        shares, representation confidence and the ``unknown`` flag.

        ``k``: candidate reference neighbours per cell (0: 100); each study's nearest three
        of them vote (``AnnotationConfig.per_study``).
        ``key_added``: also write the columns into ``query.obs`` as
        ``f"{key_added}_<column>"``, the embeddings into ``obsm[f"X_{key_added}"]`` and the
        model version and parameters into ``uns[key_added]`` (an AnnData query).
        """
        q = self._decode(query, genes, layer)
        vectors = q.vectors
        if vectors is None:
            assert q.cells is not None
            hits = core_query.fetch_cells(self.store, q.cells)
            vectors = np.stack([np.asarray(h.vector, dtype=np.float32) for h in hits])
        spec = make_filter_spec(filter)
        quantile = unknown_quantile or None
        session: dict[Any, Any] = {}  # one reference for every batch of this call
        parameters = self._annotator.parameters(
            self.store, k, spec, unknown_quantile=quantile, session=session
        )
        bar = _progress(show=progress, desc="annotate", total=len(q.names))
        parts = []
        try:
            for start in range(0, len(q.names), batch_size):
                stop = min(len(q.names), start + batch_size)
                result = self._annotator.annotate(
                    self.store,
                    vectors[start:stop],
                    k,
                    spec,
                    with_neighbours=with_neighbours,
                    unknown_quantile=quantile,
                    session=session,
                )
                parts.append(
                    frames.annotations_frame(
                        q.names[start:stop],
                        result,
                        model_version=self.encoder.model_version,
                        parameters=parameters,
                    )
                )
                if bar is not None:
                    bar.update(stop - start)
        finally:
            if bar is not None:
                bar.close()
        out = frames.concat_frames(parts)
        if key_added is not None:
            if not _is_anndata(query):
                msg = "key_added writes into an AnnData's obs: pass an AnnData query"
                raise InvalidRequestError(msg)
            frames.write_annotations(query, out, key_added=key_added, embeddings=vectors)
        return out

    def stats(
        self, *, filter: FilterLike = None, by: Sequence[str] = (), top: int = 50
    ) -> tuple[int, dict[str, pd.DataFrame]]:
        """Cells matching ``filter`` and, per facet (``cell_type``, ``tissue``, ``disease``,
        ``study`` by default), a frame of ``id, label, count``."""
        total, facets = engine.facet_counts(self.store, make_filter_spec(filter), by, top)
        columns = ["id", "label", "count"]
        return total, {name: pd.DataFrame(rows, columns=columns) for name, rows in facets.items()}

    # ------------------------------------------------------------------ helpers
    def _decode(self, query: Any, genes: Sequence[str] | None, layer: str | None) -> _Query:
        """Vectors (embedded here when the query is counts) or stored cells, with names."""
        if _is_anndata(query):
            names = [str(c) for c in query.obs_names]
            return _Query(names, vectors=self.embed(query, genes=genes, layer=layer))
        if isinstance(query, list | tuple):
            refs: list[CellRef] = []
            for ref in query:
                if isinstance(ref, str):
                    refs.append(ref)
                elif isinstance(ref, tuple) and len(ref) == 2:
                    refs.append((str(ref[0]), str(ref[1])))
                else:
                    msg = "a list query holds stored cell ids or (dataset_id, cell_id) pairs"
                    raise InvalidRequestError(msg)
            names = [r if isinstance(r, str) else "/".join(r) for r in refs]
            return _Query(names, cells=refs)
        if genes is not None:
            vectors = self.embed(query, genes=genes)
            return _Query([str(i) for i in range(len(vectors))], vectors=vectors)
        mat = np.asarray(query, dtype=np.float32)
        if mat.ndim == 1:
            mat = mat[None, :]
        if mat.ndim != 2 or mat.shape[1] != DIM:
            msg = (
                f"an embedding query must be (n, {DIM}), got {mat.shape}; "
                "pass raw counts with genes=, or an AnnData"
            )
            raise InvalidRequestError(msg)
        return _Query([str(i) for i in range(len(mat))], vectors=mat)


def _is_anndata(data: Any) -> bool:
    return hasattr(data, "obs_names") and hasattr(data, "var_names") and hasattr(data, "X")


def _progress(*, show: bool, desc: str, total: int | None = None) -> Any:
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="cells", desc=desc, dynamic_ncols=True)
