"""The pipeline's guarantees, run on the real embedded store, real files and real ontology.

The encoder and validator are the small ones from workers_testkit (the pipeline takes them as
arguments); everything else is the production code path.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from workers_testkit import GENES, TinyEncoder, tiny_validator, write_h5ad

from celldata.errors import UnreadableFileError
from celldata.read import iter_chunks
from cellsearch.ingest import pipeline
from cellsearch.ingest.pipeline import IngestOptions, ingest
from cellsearch.platform.datasets import delete_dataset
from cellsearch.platform.jobs import DatasetNotFoundError, JobState, MemoryJobStore
from vectorstore import SearchFilter, open_store

N = 300
CHUNK = 64


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One shard for the module (creating a shard costs seconds); tests use distinct ids."""
    s = open_store(path=tmp_path_factory.mktemp("store"))
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _empty_store(store):
    for dataset_id in ("D1", "D2"):
        store.delete_dataset(dataset_id)


@pytest.fixture
def jobs() -> MemoryJobStore:
    return MemoryJobStore()


def options(inbox: Path, **kw) -> IngestOptions:
    base = {
        "allowed_roots": (inbox,),
        "chunk_cells": CHUNK,
        "embed_batch_size": 32,
        "validator": tiny_validator(),
        "optimize": False,
    }
    return IngestOptions(**{**base, **kw})


def count(store, dataset_id: str) -> int:
    return store.count(SearchFilter(must={"dataset_id": [dataset_id]}))


def submit(jobs, path: Path, dataset_id: str = "D1"):
    return jobs.create(path=str(path), study_id="S1", dataset_id=dataset_id, metadata={})


def test_a_file_is_ingested_with_exact_count_progress_and_payloads(
    inbox, jobs, store, tiny_encoder
) -> None:
    path = write_h5ad(inbox / "a.h5ad", N)
    job = submit(jobs, path)
    seen: list[int] = []
    done = ingest(
        job.job_id,
        jobs=jobs,
        store=store,
        encoder=tiny_encoder,
        options=options(inbox, on_progress=lambda j: seen.append(j.cells_done)),
    )
    assert done.state is JobState.SUCCEEDED, done.error
    assert (done.cells_done, done.cells_total) == (N, N)
    assert seen == sorted(seen) and seen[-1] == N and len(seen) == -(-N // CHUNK)
    assert count(store, "D1") == N
    assert set(done.stage_seconds) >= {"validate", "read", "embed", "payload", "upsert"}

    hit = store.retrieve([("D1", "c000001")])[0]
    assert hit.payload["cell_type_id"] == "CL:0000624"
    assert {"CL:0000624", "CL:0000084", "CL:0000000"} <= set(hit.payload["cell_type_ancestors"])
    assert "UBERON:0000178" in hit.payload["tissue_ancestors"]
    assert hit.payload["study_id"] == "S1"
    assert hit.payload["donor_id"] == "d1"
    assert hit.payload["model_version"] == "tiny-1"

    entry = jobs.get_dataset("D1")
    assert (entry.n_cells, entry.genes_matched, entry.model_version) == (N, len(GENES), "tiny-1")
    # A redelivered message for a finished job changes nothing.
    again = ingest(job.job_id, jobs=jobs, store=store, encoder=tiny_encoder, options=options(inbox))
    assert again == jobs.get(job.job_id)
    assert count(store, "D1") == N


def test_log_normalised_file_fails_before_writing(inbox, jobs, store, tiny_encoder) -> None:
    path = write_h5ad(inbox / "log.h5ad", N, log_normalised=True)
    job = submit(jobs, path)
    done = ingest(job.job_id, jobs=jobs, store=store, encoder=tiny_encoder, options=options(inbox))
    assert done.state is JobState.FAILED
    assert done.error_code == "not_raw_counts"
    assert "log-normalised" in done.error
    assert store.count() == 0
    with pytest.raises(DatasetNotFoundError):
        jobs.get_dataset("D1")


def test_path_outside_roots_fails_with_its_message(tmp_path, inbox, jobs, store, tiny_encoder):
    path = write_h5ad(tmp_path / "elsewhere" / "a.h5ad", 10)
    job = submit(jobs, path)
    done = ingest(job.job_id, jobs=jobs, store=store, encoder=tiny_encoder, options=options(inbox))
    assert done.state is JobState.FAILED
    assert done.error_code == "path_not_allowed"
    assert "outside the allowed roots" in done.error
    assert store.count() == 0


class FlakyReader:
    """Real chunks, but raises ``error`` when asked for chunk number ``fail_at``."""

    def __init__(self, fail_at: int, error: Exception) -> None:
        self.fail_at, self.error, self.starts = fail_at, error, []

    def __call__(self, path, chunk_size, start):
        self.starts.append(start)
        for i, chunk in enumerate(iter_chunks(path, chunk_size=chunk_size, start=start)):
            if i == self.fail_at:
                raise self.error
            yield chunk


def test_transient_error_keeps_progress_and_the_retry_resumes(inbox, jobs, store, tiny_encoder):
    path = write_h5ad(inbox / "a.h5ad", N)
    job = submit(jobs, path)
    flaky = FlakyReader(2, ConnectionError("store unreachable"))
    with pytest.raises(ConnectionError):
        ingest(
            job.job_id,
            jobs=jobs,
            store=store,
            encoder=tiny_encoder,
            options=options(inbox, reader=flaky),
        )
    mid = jobs.get(job.job_id)
    assert not mid.state.terminal
    assert mid.cells_done == 2 * CHUNK
    assert "transient" in mid.error
    assert count(store, "D1") == 2 * CHUNK

    resumed = FlakyReader(99, RuntimeError("unused"))
    done = ingest(
        job.job_id,
        jobs=jobs,
        store=store,
        encoder=tiny_encoder,
        options=options(inbox, reader=resumed),
    )
    assert done.state is JobState.SUCCEEDED
    assert resumed.starts == [2 * CHUNK]
    assert done.attempts == 2
    assert count(store, "D1") == N


def test_permanent_error_mid_file_removes_what_was_written(inbox, jobs, store, tiny_encoder):
    path = write_h5ad(inbox / "a.h5ad", N)
    job = submit(jobs, path)
    broken = FlakyReader(3, UnreadableFileError("a.h5ad is truncated; re-upload it"))
    done = ingest(
        job.job_id,
        jobs=jobs,
        store=store,
        encoder=tiny_encoder,
        options=options(inbox, reader=broken),
    )
    assert done.state is JobState.FAILED
    assert done.error_code == "unreadable_file"
    assert done.error == "a.h5ad is truncated; re-upload it"
    assert store.count() == 0


def test_cancel_between_chunks_removes_the_points(inbox, jobs, store, tiny_encoder) -> None:
    path = write_h5ad(inbox / "a.h5ad", N)
    job = submit(jobs, path)

    def cancel_after_first(j) -> None:
        jobs.request_cancel(j.job_id)

    done = ingest(
        job.job_id,
        jobs=jobs,
        store=store,
        encoder=tiny_encoder,
        options=options(inbox, on_progress=cancel_after_first),
    )
    assert done.state is JobState.CANCELLED
    assert done.cells_done == CHUNK
    assert store.count() == 0


def test_an_existing_dataset_is_not_overwritten_or_removed(inbox, jobs, store, tiny_encoder):
    first = write_h5ad(inbox / "a.h5ad", N)
    second = write_h5ad(inbox / "b.h5ad", 50, prefix="x")
    ok = ingest(
        submit(jobs, first).job_id,
        jobs=jobs,
        store=store,
        encoder=tiny_encoder,
        options=options(inbox),
    )
    assert ok.state is JobState.SUCCEEDED
    clash = ingest(
        submit(jobs, second).job_id,
        jobs=jobs,
        store=store,
        encoder=tiny_encoder,
        options=options(inbox),
    )
    assert clash.state is JobState.FAILED
    assert clash.error_code == "dataset_exists"
    assert count(store, "D1") == N


def test_delete_and_reembed(inbox, jobs, store, tiny_encoder) -> None:
    path = write_h5ad(inbox / "a.h5ad", N)
    ingest(
        submit(jobs, path).job_id,
        jobs=jobs,
        store=store,
        encoder=tiny_encoder,
        options=options(inbox),
    )
    ingest(
        submit(jobs, path, "D2").job_id,
        jobs=jobs,
        store=store,
        encoder=tiny_encoder,
        options=options(inbox),
    )
    newer = TinyEncoder(model_version="tiny-2", seed=1)
    assert pipeline.needs_reembed(jobs, "tiny-2") == ["D1", "D2"]
    before = store.retrieve([("D1", "c000005")])[0].vector
    job = pipeline.reembed_dataset(
        "D1", jobs=jobs, store=store, encoder=newer, options=options(inbox)
    )
    assert job.state is JobState.SUCCEEDED, job.error
    assert count(store, "D1") == N
    after = store.retrieve([("D1", "c000005")])[0]
    assert after.payload["model_version"] == "tiny-2"
    assert not (after.vector == before).all()
    assert jobs.get_dataset("D1").model_version == "tiny-2"
    assert pipeline.needs_reembed(jobs, "tiny-2") == ["D2"]

    assert delete_dataset("D2", jobs=jobs, store=store) == N
    assert count(store, "D2") == 0 and count(store, "D1") == N
    with pytest.raises(DatasetNotFoundError):
        jobs.get_dataset("D2")
