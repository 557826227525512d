"""Ingestion and Atlas RPCs against the real server, Redis job records and the store."""

from __future__ import annotations

import threading
import time

import grpc
import numpy as np
import pytest

from cellsearch.client import CellSearchError

pytestmark = pytest.mark.integration


def test_submit_get_watch_a_job(server_env) -> None:
    path = server_env.inbox / "new-study.h5ad"
    path.write_bytes(b"placeholder: the worker, not the service, reads it")
    with server_env.client() as client:
        job = client.submit_ingestion(path, "smith2024", metadata={"tissue": "lung"})
        assert job.state == "PENDING"
        assert job.dataset_id == "smith2024/new-study"
        assert job.metadata == {"tissue": "lung"}
        assert server_env.submitted[-1] == job.job_id  # handed to the queue by id
        assert client.get_job(job.job_id) == job

        def worker() -> None:  # what a worker does to the record
            time.sleep(0.3)
            server_env.jobs.update(job.job_id, state="EMBEDDING", cells_total=100, cells_done=40)
            time.sleep(0.1)
            server_env.jobs.update(job.job_id, state="SUCCEEDED", cells_done=100)

        thread = threading.Thread(target=worker)
        thread.start()
        seen = list(client.watch_job(job.job_id))  # no deadline: until the job ends
        thread.join()
    assert seen[0].state == "PENDING"
    assert seen[-1].state == "SUCCEEDED"
    assert seen[-1].cells_done == 100
    assert "EMBEDDING" in {j.state for j in seen}


def test_watch_job_honours_the_deadline(server_env) -> None:
    path = server_env.inbox / "slow.h5ad"
    path.write_bytes(b"x")
    with server_env.client() as client:
        job = client.submit_ingestion(path, "slow-study")
        start = time.monotonic()
        seen = list(client.watch_job(job.job_id, timeout=1.5))  # nobody works on it
    assert 1.0 < time.monotonic() - start < 5
    assert [j.state for j in seen] == ["PENDING"]


def test_cancel_a_pending_job_then_refuse_a_second_cancel(server_env) -> None:
    path = server_env.inbox / "to-cancel.h5ad"
    path.write_bytes(b"x")
    with server_env.client() as client:
        job = client.submit_ingestion(path, "s-cancel", dataset_id="s-cancel/custom")
        assert job.dataset_id == "s-cancel/custom"
        cancelled = client.cancel_job(job.job_id)
        assert cancelled.state == "CANCELLED"
        assert cancelled.cancel_requested
        with pytest.raises(CellSearchError) as info:
            client.cancel_job(job.job_id)
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "already ended CANCELLED" in info.value.details


def test_submit_refuses_paths_outside_the_allowed_roots(server_env, tmp_path) -> None:
    outside = tmp_path / "elsewhere.h5ad"
    outside.write_bytes(b"x")
    with server_env.client() as client:
        with pytest.raises(CellSearchError) as info:
            client.submit_ingestion(outside, "s1")
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "CELLSEARCH_ALLOWED_ROOTS" in info.value.details
        with pytest.raises(CellSearchError) as info:
            client.submit_ingestion(server_env.inbox / "missing.h5ad", "s1")
        assert info.value.code == grpc.StatusCode.NOT_FOUND
        with pytest.raises(CellSearchError) as info:  # no study: the file's column is used,
            client.submit_ingestion(server_env.inbox / "missing.h5ad", "")  # the path still checked
        assert info.value.code == grpc.StatusCode.NOT_FOUND


def test_list_and_delete_datasets(server_env) -> None:
    from cellsearch.platform.jobs import DatasetEntry
    from vectorstore import CellRecord

    rng = np.random.default_rng(5)
    server_env.store.upsert(
        [
            CellRecord(
                dataset_id="tmp/d1",
                cell_id=f"tmp-{i}",
                vector=rng.normal(size=128),
                payload={"study_id": "tmp", "cell_type_id": "CL:0000236"},
            )
            for i in range(7)
        ]
    )
    server_env.jobs.register_dataset(
        DatasetEntry("tmp/d1", "tmp", "/data/tmp.h5ad", 7, 10, 10, "test-model", "j")
    )
    with server_env.client() as client:
        listed = client.list_datasets()
        assert {"ild-lung/d1", "normal-lung/d1", "pbmc/d1", "tmp/d1"} <= set(listed["dataset_id"])
        row = listed.set_index("dataset_id").loc["tmp/d1"]
        assert row["n_cells"] == 7 and row["study_id"] == "tmp"
        assert client.delete_dataset("tmp/d1") == 7
        assert "tmp/d1" not in set(client.list_datasets()["dataset_id"])
        assert client.get_cells(["tmp-0"]).empty


def test_ping_stats_and_resolve(server_env) -> None:
    from cellsearch import __version__

    with server_env.client() as client:
        assert client.ping() == __version__
        total, facets = client.stats()
        lung_total, lung = client.stats(filter={"tissues": ["lung"]}, by=["study", "cell_type"])
        assert client.resolve("ILD", "disease") == ("MONDO:0015925", "interstitial lung disease")
        assert client.resolve("alveolar macrophage") == ("CL:0000583", "alveolar macrophage")
        with pytest.raises(CellSearchError) as info:
            client.resolve("lung", "organ")
    assert total == 160
    assert set(facets) == {"cell_type", "tissue", "disease", "study"}
    tissues = facets["tissue"].set_index("id")
    assert tissues.loc["UBERON:0002048", "count"] == 120
    assert tissues.loc["UBERON:0002048", "label"] == "lung"
    assert lung_total == 120
    assert set(lung["study"]["id"]) == {"ild-lung", "normal-lung"}
    assert lung["cell_type"]["count"].sum() == 120
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "cell_type" in info.value.details
