"""Accept an ingestion: check what the client sent, record the job, hand it to a runner.

The one submit path of every mode (the gRPC ``SubmitIngestion``, the embedded platform, the
tests): nothing a client sends chooses internal behaviour (reserved metadata keys and
oversized metadata are refused), the path is checked by the one path policy before a job
exists, and the dataset id is claimed by the job that creates it (``DatasetTakenError``
when it is registered or in flight).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from cellsearch.platform.errors import UnavailableError
from cellsearch.platform.jobs import Job, JobState, JobStore
from cellsearch.platform.limits import check_metadata
from cellsearch.platform.paths import check_path
from cellsearch.platform.settings import Settings
from cellsearch.platform.submit import Enqueue

#: The metadata limits when a caller passes none: the settings' own defaults, not copies.
_DEFAULT_LIMITS = Settings.model_construct()


def default_dataset_id(study_id: str, path: str | Path) -> str:
    """``study/file-name`` without the data suffixes (the file name alone without a study)."""
    name = Path(path).name.removesuffix(".gz").removesuffix(".h5ad").removesuffix(".h5")
    return f"{study_id}/{name}" if study_id else name


def submit_ingestion(
    jobs: JobStore,
    enqueue: Enqueue,
    *,
    path: str,
    study_id: str = "",
    dataset_id: str = "",
    metadata: Mapping[str, str] | None = None,
    allowed_roots: Iterable[Path] | None = None,
    max_metadata_entries: int = _DEFAULT_LIMITS.max_metadata_entries,
    max_metadata_bytes: int = _DEFAULT_LIMITS.max_metadata_bytes,
) -> Job:
    """Record a PENDING job for ``path`` and enqueue it; returns the job as recorded.

    ``allowed_roots`` given: the path must pass the ingestion path policy now (the pipeline
    checks it again when it opens the file). If the queue does not answer, the job ends
    FAILED, its claim is released and :class:`UnavailableError` is raised.

    ``study_id`` empty: the file's own ``study_id`` column names each cell's study (a
    multi-study reference in one file); validation refuses a file without one.
    """
    meta = dict(metadata or {})
    check_metadata(meta, max_entries=max_metadata_entries, max_bytes=max_metadata_bytes)
    if allowed_roots is not None:
        path = str(check_path(path, allowed_roots))
    job = jobs.create(
        path=path,
        study_id=study_id,
        dataset_id=dataset_id or default_dataset_id(study_id, path),
        metadata=meta,
        claim=True,  # DatasetTakenError (ALREADY_EXISTS) when the id is not free
    )
    try:
        enqueue(job.job_id)
    except Exception as exc:
        reason = f"could not enqueue the job: {exc}"
        jobs.update(job.job_id, state=JobState.FAILED, error=reason, error_code="unavailable")
        jobs.release_claim(job.dataset_id, job.job_id)
        msg = f"the ingestion queue does not answer ({exc}); is the broker running?"
        raise UnavailableError(msg) from exc
    return jobs.get(job.job_id)
