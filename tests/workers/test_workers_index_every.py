"""A big job builds its index every ``index_every_cells`` cells (bounded engine memory)."""

from __future__ import annotations

from workers_testkit import TinyEncoder, tiny_validator, write_h5ad

from cellsearch.ingest.pipeline import IngestOptions, ingest
from cellsearch.platform.jobs import JobState, MemoryJobStore
from vectorstore import open_store


class CountingStore:
    def __init__(self, store) -> None:
        self.store = store
        self.builds = 0

    def optimize(self) -> None:
        self.builds += 1

    def __getattr__(self, name):
        return getattr(self.store, name)


def test_the_index_is_built_every_n_cells_and_at_the_end(tmp_path):
    path = write_h5ad(tmp_path / "inbox" / "a.h5ad", 300)
    jobs = MemoryJobStore()
    job = jobs.create(path=str(path), study_id="S", dataset_id="D", metadata={})
    store = open_store(path=tmp_path / "store")
    counting = CountingStore(store)
    try:
        options = IngestOptions(
            allowed_roots=(tmp_path / "inbox",),
            chunk_cells=50,
            validator=tiny_validator(),
            index_every_cells=100,
        )
        done = ingest(job.job_id, jobs=jobs, store=counting, encoder=TinyEncoder(), options=options)
        assert done.state is JobState.SUCCEEDED, done.error
        assert counting.builds == 3 + 1  # after 100, 200, 300 cells, then the job's own
    finally:
        store.close()
