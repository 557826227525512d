"""The ingestion pipeline as plain functions: check path → validate → per chunk: read, embed,
build payloads, upsert, record progress → register the dataset.

Every dependency (job records, the store, the encoder) is passed in, so the Celery task, the
in-process runner of the embedded mode and the unit tests all run this same code.

Guarantees:

* **A bad input writes nothing.** The path check and the whole-file validation (every cell)
  run before the first upsert; a refused job ends FAILED with the error's message and code.
* **The file read is the file checked.** It is opened once inside the allowed roots and read
  only through that handle (``cellsearch.platform.paths.open_checked``; tests/workers/
  test_workers_open_once.py).
* **A failed or cancelled job leaves the store as it was.** A dataset id belongs to one job
  (a second ingestion of a registered id is refused), so on a permanent failure or a cancel
  the pipeline deletes every point of that dataset id: exactly what this job wrote.
* **A crash is resumable.** Point ids are deterministic (uuid5 of dataset and cell id) and
  ``cells_done`` is recorded only after a chunk's upsert returned, so a redelivered job
  resumes at ``cells_done`` and re-upserting any overlap overwrites instead of duplicating.
  Transient outages (store or Redis unreachable) are re-raised untouched for the task to
  retry; the job keeps its progress.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp

from celldata.errors import DataValidationError
from cellsearch.platform.errors import DatasetExistsError, IngestionRefusedError, is_transient
from cellsearch.platform.jobs import DatasetEntry, DatasetNotFoundError, Job, JobState, JobStore
from cellsearch.platform.paths import OpenedInput, open_checked
from cellsearch.platform.schema import OBS_COLUMNS, TERM_FIELDS
from vectorstore import CellRecord, CellStore

if TYPE_CHECKING:
    from celldata.validate import ValidationReport

#: Job metadata key that allows a job to overwrite an already registered dataset (re-embedding).
REEMBED_KEY = "reembed_of_model"

STAGES = ("validate", "read", "embed", "payload", "upsert", "index")


class Encoder(Protocol):
    """What the pipeline needs of ``encoder.CellEncoder``."""

    @property
    def genes(self) -> Sequence[str]: ...

    @property
    def model_version(self) -> str: ...

    def embed(
        self,
        data: sp.csr_matrix,
        *,
        gene_names: Sequence[str],
        batch_size: int,
        min_overlap: float,
    ) -> np.ndarray:
        """Raw counts (cells x file genes) -> float32 unit vectors (cells x 128)."""
        ...


@dataclass(frozen=True)
class ValidationSummary:
    """What the pipeline keeps from the datasets package's validation report."""

    n_cells: int
    genes_matched: int
    genes_total: int


#: ``validate(path, vocabulary) -> ValidationSummary``; raises a ``DataValidationError``.
Validator = Callable[[Path, Sequence[str]], ValidationSummary]
#: ``read_chunks(path, chunk_size, start) -> iterator of celldata.read.CellChunk``.
ChunkReader = Callable[[Path, int, int], Iterable[Any]]
#: ``ancestors(term_id) -> the term and its ancestors``.
AncestorFn = Callable[[str], Iterable[str]]


@dataclass
class IngestOptions:
    """Knobs of one ingestion run (from Settings in the worker; plain values in tests)."""

    allowed_roots: Sequence[Path]
    chunk_cells: int = 8192
    embed_batch_size: int = 4096
    min_gene_overlap: float = 0.5
    optimize: bool = True
    #: Also build the index every this many cells written (None: at the end only), so the
    #: engine's unindexed in-memory segment (~3.5 KB a cell) stays bounded during a big job.
    index_every_cells: int | None = None
    validator: Validator | None = None
    reader: ChunkReader | None = None
    ancestors: AncestorFn | None = None
    on_progress: Callable[[Job], None] | None = None
    clock: Callable[[], float] = time.perf_counter


@dataclass
class _Timer:
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    clock: Callable[[], float] = time.perf_counter

    def add(self, stage: str, since: float) -> float:
        now = self.clock()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + (now - since)
        return now

    def rounded(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in self.seconds.items()}


# ------------------------------------------------------------------------------ defaults


def default_validator(
    min_gene_overlap: float,
    *,
    defaults: Mapping[str, str] | None = None,
    needs_study_column: bool = False,
) -> Validator:
    """The datasets package's full validation (raw counts, overlap, ontology terms, unique ids);
    ``defaults`` (a job's metadata) fill required obs columns the file lacks.
    ``needs_study_column``: the submission named no study, so the file must say each cell's."""

    def validate(path: Path, vocabulary: Sequence[str]) -> ValidationSummary:
        from celldata.validate import REFERENCE_OBS, validate_dataset

        study_column = OBS_COLUMNS["study_id"][:1] if needs_study_column else ()
        report = validate_dataset(
            path,
            vocabulary=vocabulary,
            min_gene_overlap=min_gene_overlap,
            defaults=defaults or {},
            required_obs=(*REFERENCE_OBS, *study_column),
        )
        return summarise_report(report)

    return validate


def summarise_report(report: ValidationReport) -> ValidationSummary:
    """The cell and gene counts the pipeline keeps from a validation report."""
    return ValidationSummary(
        n_cells=report.n_cells,
        genes_matched=report.n_genes_matched or 0,
        genes_total=report.n_genes,
    )


def default_reader(path: Path, chunk_size: int, start: int) -> Iterable[Any]:
    from celldata.read import iter_chunks

    return iter_chunks(path, chunk_size=chunk_size, start=start)


def default_ancestors(term_id: str) -> Iterable[str]:
    import ontology

    return ontology.ancestors(term_id, include_self=True)


# ------------------------------------------------------------------------------ payloads


class PayloadBuilder:
    """Payload dicts for a chunk's cells, with ancestor lists computed once per distinct term."""

    def __init__(self, job: Job, *, model_version: str, ancestors: AncestorFn) -> None:
        self._job = job
        self._model_version = model_version
        self._ancestors = ancestors
        # "unknown": CELLxGENE's cell without a type, stored without ancestors (never votes)
        self._cache: dict[str, list[str]] = {"": [], "unknown": []}

    def ancestors_of(self, term_id: str) -> list[str]:
        cached = self._cache.get(term_id)
        if cached is None:
            cached = self._cache[term_id] = sorted(self._ancestors(term_id))
        return cached

    def column(self, obs: pd.DataFrame, name: str) -> np.ndarray:
        """Values of payload field ``name`` for every cell (obs column, else job metadata)."""
        n = len(obs)
        if name == "study_id" and "study_id" in self._job.metadata:  # an explicit override
            return np.full(n, self._job.metadata["study_id"], dtype=object)
        if name == "study_id" and "study_id" not in obs.columns and self._job.study_id:
            return np.full(n, self._job.study_id, dtype=object)  # a file's own column is kept
        for col in OBS_COLUMNS[name]:
            if col in obs.columns:
                values = obs[col].astype(str).to_numpy(dtype=object)
                return np.where(pd.isna(obs[col]).to_numpy(), "", values)
        for col in (*OBS_COLUMNS[name], name):
            if col in self._job.metadata:
                return np.full(n, self._job.metadata[col], dtype=object)
        return np.full(n, "", dtype=object)

    def groups(self, obs: pd.DataFrame) -> PayloadGroups:
        """The chunk's cells as (cell ids, distinct payloads, each cell's payload index).

        Cells of one sample and cell type share every field but ``cell_id``, so a chunk of
        thousands of cells has a few dozen distinct payloads: each is built (and its
        ancestor lists looked up) once, with the grouping done on integer codes.
        """
        cell_ids = obs.index.astype(str).to_numpy(dtype=object)
        columns = {name: self.column(obs, name) for name in OBS_COLUMNS}
        key = np.zeros(len(obs), dtype=np.int64)
        for values in columns.values():
            codes, uniques = pd.factorize(values)
            key = key * (len(uniques) + 1) + codes
            key, _ = pd.factorize(key)  # keep the combined code small
        group = key  # codes 0..k-1 in order of first appearance
        first = np.unique(group, return_index=True)[1]
        payloads: list[dict[str, str | list[str]]] = []
        for row in first:
            payload: dict[str, str | list[str]] = {n: str(v[row]) for n, v in columns.items()}
            for name, list_field in TERM_FIELDS.items():
                payload[list_field] = self.ancestors_of(str(columns[name][row]))
            payload["model_version"] = self._model_version
            payloads.append(payload)
        return PayloadGroups(cell_ids=cell_ids, payloads=payloads, group=group)

    def records(self, obs: pd.DataFrame, vectors: np.ndarray) -> list[CellRecord]:
        """One :class:`CellRecord` per cell (for stores without a grouped bulk write)."""
        found = self.groups(obs)
        dataset_id = self._job.dataset_id
        return [
            CellRecord(dataset_id, str(cell_id), vectors[i], dict(found.payloads[g]))
            for i, (cell_id, g) in enumerate(zip(found.cell_ids, found.group, strict=True))
        ]


@dataclass(frozen=True)
class PayloadGroups:
    """A chunk's payloads, grouped: cell ``i`` carries ``payloads[group[i]]``."""

    cell_ids: np.ndarray
    payloads: list[dict[str, str | list[str]]]
    group: np.ndarray


def write_chunk(
    store: CellStore, dataset_id: str, found: PayloadGroups, vectors: np.ndarray
) -> None:
    """Upsert a chunk through the store's grouped bulk write."""
    store.upsert_grouped(dataset_id, list(found.cell_ids), vectors, found.payloads, found.group)


# ------------------------------------------------------------------------------ the job


def ingest(
    job_id: str, *, jobs: JobStore, store: CellStore, encoder: Encoder, options: IngestOptions
) -> Job:
    """Run ingestion job ``job_id`` to a terminal state (or re-raise a transient outage).

    Idempotent: a job already in a terminal state is returned untouched, and a job that
    was interrupted resumes at its recorded ``cells_done``.
    """
    job = jobs.get(job_id)
    if job.state.terminal:
        return job
    if job.cancel_requested:
        return _cancel(job, jobs=jobs, store=store)
    job = jobs.update(job_id, state=JobState.VALIDATING, attempts=job.attempts + 1, error="")
    timer = _Timer(clock=options.clock)
    timer.seconds.update({k: v for k, v in job.stage_seconds.items() if k in timer.seconds})
    try:
        return _run(job, jobs=jobs, store=store, encoder=encoder, options=options, timer=timer)
    except IngestionRefusedError as exc:
        return _fail(job, exc, code=exc.code, jobs=jobs, store=store, timer=timer)
    except Exception as exc:
        if is_transient(exc):
            jobs.update(job_id, error=f"retrying after a transient error: {exc}")
            raise
        if isinstance(exc, DataValidationError):
            return _fail(job, exc, code=exc.code, jobs=jobs, store=store, timer=timer)
        return _fail(job, exc, code="internal", jobs=jobs, store=store, timer=timer)


def _run(
    job: Job,
    *,
    jobs: JobStore,
    store: CellStore,
    encoder: Encoder,
    options: IngestOptions,
    timer: _Timer,
) -> Job:
    with open_checked(job.path, options.allowed_roots) as source:
        try:
            return _run_opened(
                job, source, jobs=jobs, store=store, encoder=encoder, options=options, timer=timer
            )
        except ValueError as exc:  # name the user's path, not the handle, in the message
            _show_path(exc, source)
            raise


def _show_path(exc: ValueError, source: OpenedInput) -> None:
    handle, shown = str(source.path), str(source.shown)
    if handle == shown:
        return
    exc.args = tuple(a.replace(handle, shown) if isinstance(a, str) else a for a in exc.args)
    if isinstance(exc, DataValidationError):
        exc.message = exc.message.replace(handle, shown)


def _run_opened(
    job: Job,
    source: OpenedInput,
    *,
    jobs: JobStore,
    store: CellStore,
    encoder: Encoder,
    options: IngestOptions,
    timer: _Timer,
) -> Job:
    """The job over an input opened once (``source.path`` names the handle, see paths)."""
    path = source.path
    _check_dataset_free(job, jobs)
    # metadata defaults (``--meta tissue_ontology_term_id=...``) stand in for missing columns
    validate = options.validator or default_validator(
        options.min_gene_overlap, defaults=job.metadata, needs_study_column=not job.study_id
    )
    started = timer.clock()
    summary = validate(path, list(encoder.genes))
    timer.add("validate", started)
    job = jobs.update(
        job.job_id,
        state=JobState.EMBEDDING,
        cells_total=summary.n_cells,
        stage_seconds=timer.rounded(),
    )
    read = options.reader or default_reader
    payloads = PayloadBuilder(
        job,
        model_version=encoder.model_version,
        ancestors=options.ancestors or default_ancestors,
    )
    resume_at = min(job.cells_done, summary.n_cells)
    unindexed = 0
    chunks = iter(read(path, options.chunk_cells, resume_at))
    while True:
        started = timer.clock()
        chunk = next(chunks, None)
        timer.add("read", started)
        if chunk is None:
            break
        if jobs.get(job.job_id).cancel_requested:
            return _cancel(job, jobs=jobs, store=store)
        started = timer.clock()
        vectors = encoder.embed(
            chunk.X,
            gene_names=chunk.var_names,
            batch_size=options.embed_batch_size,
            min_overlap=options.min_gene_overlap,
        )
        started = timer.add("embed", started)
        found = payloads.groups(chunk.obs)
        started = timer.add("payload", started)
        write_chunk(store, job.dataset_id, found, vectors)
        started = timer.add("upsert", started)
        unindexed += chunk.n_cells
        if (
            options.optimize
            and options.index_every_cells
            and unindexed >= options.index_every_cells
        ):
            store.optimize()
            timer.add("index", started)
            unindexed = 0
        job = jobs.update(
            job.job_id,
            cells_done=chunk.start + chunk.n_cells,
            stage_seconds=timer.rounded(),
        )
        if options.on_progress is not None:
            options.on_progress(job)
    if jobs.get(job.job_id).cancel_requested:
        return _cancel(job, jobs=jobs, store=store)
    job = jobs.update(job.job_id, state=JobState.UPSERTING, stage_seconds=timer.rounded())
    if options.optimize:
        started = timer.clock()
        store.optimize()
        timer.add("index", started)
    jobs.register_dataset(  # the registry entry takes over from the job's claim
        DatasetEntry(
            dataset_id=job.dataset_id,
            study_id=job.study_id,
            path=str(source.shown),
            n_cells=summary.n_cells,
            genes_matched=summary.genes_matched,
            genes_total=summary.genes_total,
            model_version=encoder.model_version,
            job_id=job.job_id,
            metadata=dict(job.metadata),
            ingested_at=time.time(),
        )
    )
    done = jobs.update(
        job.job_id,
        state=JobState.SUCCEEDED,
        cells_done=summary.n_cells,
        stage_seconds=timer.rounded(),
        error="",
    )
    jobs.release_claim(job.dataset_id, job.job_id)
    return done


def _check_dataset_free(job: Job, jobs: JobStore) -> None:
    """A dataset id belongs to one job, so that discarding it on failure discards only ours."""
    try:
        entry = jobs.get_dataset(job.dataset_id)
    except DatasetNotFoundError:
        return
    if entry.job_id == job.job_id or REEMBED_KEY in job.metadata:
        return
    msg = (
        f"dataset {job.dataset_id!r} is already in the atlas (ingested by job {entry.job_id}); "
        "choose another dataset id, delete the dataset first, or re-embed it"
    )
    raise DatasetExistsError(msg)


def _owns_dataset(job: Job, jobs: JobStore) -> bool:
    """True when the points under ``job.dataset_id`` can only have been written by ``job``."""
    holder = jobs.claim_holder(job.dataset_id)
    if holder is not None and holder != job.job_id:
        return False  # another job claimed the id: its points are not ours to discard
    try:
        entry = jobs.get_dataset(job.dataset_id)
    except DatasetNotFoundError:
        return True
    return entry.job_id == job.job_id and REEMBED_KEY not in job.metadata


def _discard(job: Job, *, jobs: JobStore, store: CellStore) -> None:
    if _owns_dataset(job, jobs):
        store.delete_dataset(job.dataset_id)


def _fail(
    job: Job, exc: BaseException, *, code: str, jobs: JobStore, store: CellStore, timer: _Timer
) -> Job:
    if not isinstance(exc, DatasetExistsError):
        _discard(job, jobs=jobs, store=store)
    message = exc.message if isinstance(exc, DataValidationError) else str(exc)
    message = message or type(exc).__name__
    failed = jobs.update(
        job.job_id,
        state=JobState.FAILED,
        error=message,
        error_code=code,
        stage_seconds=timer.rounded(),
    )
    jobs.release_claim(job.dataset_id, job.job_id)
    return failed


def _cancel(job: Job, *, jobs: JobStore, store: CellStore) -> Job:
    _discard(job, jobs=jobs, store=store)
    cancelled = jobs.update(job.job_id, state=JobState.CANCELLED, error="cancelled on request")
    jobs.release_claim(job.dataset_id, job.job_id)
    return cancelled


def fail_job(
    job_id: str, message: str, *, code: str, jobs: JobStore, store: CellStore | None
) -> Job:
    """Mark a job FAILED from outside the pipeline (retries exhausted), discarding its points."""
    job = jobs.get(job_id)
    if job.state.terminal:
        return job
    if store is not None:
        _discard(job, jobs=jobs, store=store)
    failed = jobs.update(job_id, state=JobState.FAILED, error=message, error_code=code)
    jobs.release_claim(job.dataset_id, job_id)
    return failed


# ------------------------------------------------------------------------------ datasets


def submit_reembed(dataset_id: str, *, jobs: JobStore, model_version: str) -> Job:
    """A job that re-embeds a registered dataset from its file with the current model.

    Points keep their ids and are overwritten in place; each carries ``model_version``, so a
    re-embed interrupted part-way is visible per point and resumes where it stopped. Enqueue
    the returned job like any ingestion job.
    """
    entry = jobs.get_dataset(dataset_id)
    metadata = {**entry.metadata, REEMBED_KEY: entry.model_version, "model_version": model_version}
    return jobs.create(
        path=entry.path, study_id=entry.study_id, dataset_id=dataset_id, metadata=metadata
    )


def needs_reembed(jobs: JobStore, model_version: str) -> list[str]:
    """Dataset ids embedded by a model other than ``model_version``."""
    return [d.dataset_id for d in jobs.list_datasets() if d.model_version != model_version]


def reembed_dataset(
    dataset_id: str,
    *,
    jobs: JobStore,
    store: CellStore,
    encoder: Encoder,
    options: IngestOptions,
) -> Job:
    """Re-embed ``dataset_id`` in this process (the embedded mode without Redis)."""
    job = submit_reembed(dataset_id, jobs=jobs, model_version=encoder.model_version)
    return ingest(job.job_id, jobs=jobs, store=store, encoder=encoder, options=options)


def job_summary(job: Job) -> Mapping[str, Any]:
    """A small dict for logs and Celery task state."""
    return {
        "job_id": job.job_id,
        "state": str(job.state),
        "cells_done": job.cells_done,
        "cells_total": job.cells_total,
    }
