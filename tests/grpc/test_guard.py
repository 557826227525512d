"""The interceptor and the hardened Ingestion service on a real server with small limits.

Budget, reserved and oversized metadata, ALREADY_EXISTS, the watcher cap and lifetime,
request ids, metrics, and the NOT_SERVING drain on shutdown.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cellsearch.client import CellSearchClient, CellSearchError
from cellsearch.platform import ops
from cellsearch.platform.jobs import DatasetEntry, JobState, MemoryJobStore
from cellsearch.platform.settings import Settings
from cellsearch.v1 import cellsearch_pb2 as pb
from cellsearch.v1 import cellsearch_pb2_grpc as pb_grpc
from services.search.server import build_server, stop_server

WATCHERS = 3


@dataclass
class Guarded:
    address: str
    server: grpc.Server
    jobs: MemoryJobStore
    inbox: Path
    submitted: list[str]

    def client(self, **kw) -> CellSearchClient:
        return CellSearchClient(self.address, timeout=10, **kw)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory) -> Iterator[Guarded]:
    from vectorstore import open_store

    root = tmp_path_factory.mktemp("guard")
    inbox = root / "inbox"
    inbox.mkdir()
    (inbox / "a.h5ad").write_bytes(b"not read: nobody works on these jobs")
    settings = Settings(
        store_path=root / "store",
        grpc_address="127.0.0.1:0",
        allowed_roots=(inbox,),
        max_request_hits=1000,
        max_metadata_bytes=1024,
        max_watchers=WATCHERS,
        watch_max_s=2.0,
        grpc_workers=WATCHERS + 3,
    )
    store = open_store(path=settings.store_path)
    jobs = MemoryJobStore()
    jobs.register_dataset(DatasetEntry("taken", "S", "/x", 1, 1, 1, "m", "old-job"))
    submitted: list[str] = []
    server, port = build_server(settings, store=store, jobs=jobs, submit=submitted.append)
    yield Guarded(f"127.0.0.1:{port}", server, jobs, inbox, submitted)
    server.stop(None).wait()
    store.close()


def _vectors(n: int) -> np.ndarray:
    v = np.random.default_rng(0).normal(size=(n, 128)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_a_search_over_budget_is_refused_before_any_work(guarded):
    with guarded.client() as client:
        started = time.perf_counter()
        with pytest.raises(CellSearchError) as err:
            client.search(_vectors(30), k=100)  # 3,000 neighbours > 1,000
        assert err.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "3,000 neighbours" in str(err.value)
        assert time.perf_counter() - started < 1.0


def test_an_annotate_message_over_budget_is_refused(guarded):
    stub = pb_grpc.CellSearchStub(grpc.insecure_channel(guarded.address))
    vec = _vectors(30)
    req = pb.AnnotateRequest(
        embeddings=pb.Embeddings(dim=128, values=vec.ravel().tolist()), k=50
    )  # 30 x 50 = 1,500 > 1,000
    with pytest.raises(grpc.RpcError) as err:
        list(stub.Annotate(iter([req]), timeout=10))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_reserved_and_oversized_metadata_are_refused(guarded):
    path = str(guarded.inbox / "a.h5ad")
    before = len(guarded.jobs.list_jobs())
    with guarded.client() as client:
        with pytest.raises(CellSearchError) as err:
            client.submit_ingestion(path, "S", dataset_id="x1", metadata={"reembed_of_model": "m"})
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(CellSearchError) as err:
            client.submit_ingestion(path, "S", dataset_id="x2", metadata={"note": "x" * 5000})
        assert err.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert len(guarded.jobs.list_jobs()) == before  # no job was created


def test_a_taken_dataset_id_is_refused_at_submit(guarded):
    path = str(guarded.inbox / "a.h5ad")
    with guarded.client() as client:
        with pytest.raises(CellSearchError) as err:
            client.submit_ingestion(path, "S", dataset_id="taken")
        assert err.value.code == grpc.StatusCode.ALREADY_EXISTS
        first = client.submit_ingestion(path, "S", dataset_id="in-flight")
        with pytest.raises(CellSearchError) as err:
            client.submit_ingestion(path, "S", dataset_id="in-flight")
        assert err.value.code == grpc.StatusCode.ALREADY_EXISTS
        assert first.job_id in str(err.value)
        client.cancel_job(first.job_id)  # PENDING: cancelled at once, the claim is stale
        again = client.submit_ingestion(path, "S", dataset_id="in-flight")
        assert again.job_id != first.job_id
        client.cancel_job(again.job_id)


def _ping_ms(address: str) -> float:
    with CellSearchClient(address, timeout=5) as client:
        started = time.perf_counter()
        client.ping()
        return (time.perf_counter() - started) * 1000


def _open_watchers() -> float:
    return ops.REGISTRY.get_sample_value("cellsearch_watchers") or 0.0


def test_watchers_are_capped_and_never_take_the_unary_threads(guarded):
    path = str(guarded.inbox / "a.h5ad")
    with guarded.client() as client:
        job = client.submit_ingestion(path, "S", dataset_id="watched")
    channel = grpc.insecure_channel(guarded.address)
    stub = pb_grpc.IngestionStub(channel)
    calls = [stub.WatchJob(pb.JobRequest(job_id=job.job_id)) for _ in range(WATCHERS)]
    for call in calls:
        next(call)  # each is open and holds a server thread
    refused = stub.WatchJob(pb.JobRequest(job_id=job.job_id))
    with pytest.raises(grpc.RpcError) as err:
        list(refused)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    _ping_ms(guarded.address)  # warm the channel
    assert max(_ping_ms(guarded.address) for _ in range(5)) < 100
    # the client falls back to polling GetJob when refused
    with guarded.client() as client:
        seen = list(client.watch_job(job.job_id, timeout=1.0, poll_s=0.2))
        assert seen and seen[0].state == JobState.PENDING
    for call in calls:
        call.cancel()
    deadline = time.monotonic() + 3
    while _open_watchers() > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _open_watchers() == 0  # cancelled watchers gave their threads back
    channel.close()
    with guarded.client() as client:
        client.cancel_job(job.job_id)


def test_a_watch_ends_after_its_server_side_lifetime(guarded):
    path = str(guarded.inbox / "a.h5ad")
    with guarded.client() as client:
        job = client.submit_ingestion(path, "S", dataset_id="lifetime")
    stub = pb_grpc.IngestionStub(grpc.insecure_channel(guarded.address))
    started = time.perf_counter()
    seen = list(stub.WatchJob(pb.JobRequest(job_id=job.job_id)))  # no client deadline
    assert 1.5 < time.perf_counter() - started < 5.0
    assert seen[0].state == pb.PENDING
    with guarded.client() as client:
        client.cancel_job(job.job_id)


def test_the_request_id_comes_back_and_metrics_are_served(guarded):
    stub = pb_grpc.AtlasStub(grpc.insecure_channel(guarded.address))
    _reply, call = stub.Ping.with_call(
        pb.PingRequest(), metadata=(("x-request-id", "req-abc"),), timeout=5
    )
    assert ("x-request-id", "req-abc") in tuple(call.trailing_metadata())
    port = ops.start_metrics(0, job_states=ops.job_states_of(guarded.jobs))
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'cellsearch_rpc_seconds_count{code="OK",method="Ping"}' in body
    assert 'method="Search"' in body and 'code="RESOURCE_EXHAUSTED"' in body
    assert "cellsearch_jobs{" in body


def test_shutdown_reports_not_serving_through_the_drain(tmp_path):
    from vectorstore import open_store

    settings = Settings(store_path=tmp_path / "s", grpc_address="127.0.0.1:0", drain_s=1.0)
    store = open_store(path=settings.store_path)
    server, port = build_server(settings, store=store, jobs=MemoryJobStore(), submit=print)
    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
    check = health_pb2.HealthCheckRequest(service="")
    assert health.Check(check, timeout=2).status == health_pb2.HealthCheckResponse.SERVING
    stopper = threading.Thread(target=stop_server, args=(server, 1.0), kwargs={"drain_s": 1.0})
    stopper.start()
    time.sleep(0.4)
    assert health.Check(check, timeout=2).status == health_pb2.HealthCheckResponse.NOT_SERVING
    stopper.join(10)
    store.close()


def test_auth_comes_before_the_budget(tmp_path):
    from pydantic import SecretStr

    from vectorstore import open_store

    settings = Settings(
        store_path=tmp_path / "s",
        grpc_address="127.0.0.1:0",
        auth_token=SecretStr("tok"),
        max_request_hits=10,
    )
    store = open_store(path=settings.store_path)
    server, port = build_server(settings, store=store, jobs=MemoryJobStore(), submit=print)
    try:
        address = f"127.0.0.1:{port}"
        for token, code in ((None, "UNAUTHENTICATED"), ("tok", "RESOURCE_EXHAUSTED")):
            with CellSearchClient(address, token=token, timeout=5) as client:
                with pytest.raises(CellSearchError) as err:
                    client.search(_vectors(5), k=10)  # 50 neighbours > 10
                assert err.value.code.name == code
    finally:
        server.stop(None).wait()
        store.close()
