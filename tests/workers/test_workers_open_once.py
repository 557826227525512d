"""The ingestion file is opened once and read only through that handle.

The attack: a folder under the allowed root is swapped for a symlink to a folder outside it
while the job validates. Before, the reader re-opened the file by name and ingested the
outside file's cells; now every read goes through the handle opened (and checked) first.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from workers_testkit import TinyEncoder, tiny_validator, write_h5ad

from cellsearch.ingest.pipeline import IngestOptions, ingest
from cellsearch.platform.errors import PathNotAllowedError
from cellsearch.platform.jobs import JobState, MemoryJobStore
from cellsearch.platform.paths import open_checked
from vectorstore import SearchFilter, open_store


def _swap_for_link(folder: Path, target: Path) -> None:
    folder.rename(folder.with_name(folder.name + ".orig"))
    folder.symlink_to(target, target_is_directory=True)


def test_a_folder_swapped_during_validation_reads_the_file_that_was_checked(tmp_path):
    inbox, outside = tmp_path / "inbox", tmp_path / "outside"
    path = write_h5ad(inbox / "data" / "cells.h5ad", 50, prefix="in")
    write_h5ad(outside / "data" / "cells.h5ad", 80, prefix="out", seed=1)
    checked = tiny_validator()
    shown = str(path.resolve())

    def validate_then_swap(p, vocabulary):
        summary = checked(p, vocabulary)
        _swap_for_link(inbox / "data", outside / "data")  # the attacker's move
        return summary

    jobs = MemoryJobStore()
    job = jobs.create(path=str(path), study_id="S", dataset_id="D", metadata={})
    store = open_store(path=tmp_path / "store")
    try:
        options = IngestOptions(
            allowed_roots=(inbox,), chunk_cells=32, validator=validate_then_swap, optimize=False
        )
        done = ingest(job.job_id, jobs=jobs, store=store, encoder=TinyEncoder(), options=options)
        assert done.state == JobState.SUCCEEDED, done.error
        hits = store.retrieve([("D", f"in{i:06d}") for i in range(50)], with_vectors=False)
        assert len(hits) == 50
        assert store.count(SearchFilter(must={"dataset_id": ["D"]})) == 50  # no outside cell
        assert jobs.get_dataset("D").path == shown  # the path as checked, not the handle
    finally:
        store.close()


def test_a_link_swapped_in_before_the_open_is_refused(tmp_path, monkeypatch):
    inbox, outside = tmp_path / "inbox", tmp_path / "outside"
    path = write_h5ad(inbox / "data" / "cells.h5ad", 10)
    write_h5ad(outside / "data" / "cells.h5ad", 10)
    from cellsearch.platform import paths

    real_check = paths.check_path

    def check_then_swap(p, roots):
        resolved = real_check(p, roots)
        _swap_for_link(inbox / "data", outside / "data")  # between the check and the open
        return resolved

    monkeypatch.setattr(paths, "check_path", check_then_swap)
    with (
        pytest.raises(PathNotAllowedError, match="replaced while it was checked"),
        open_checked(path, [inbox]),
    ):
        pass


def test_a_final_symlink_is_not_followed(tmp_path):
    inbox = tmp_path / "inbox"
    real = write_h5ad(inbox / "real.h5ad", 10)
    link = inbox / "link.h5ad"
    os.symlink(real, link)
    # check_path resolves the link inside the roots; the open itself never follows one
    with open_checked(link, [inbox]) as opened:
        assert opened.shown == real.resolve()
        assert opened.path.exists()
