"""Every status code the service uses, with the message a person acts on; auth refusals."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from cellsearch.client import CellSearchClient, CellSearchError
from cellsearch.v1 import cellsearch_pb2 as pb
from cellsearch.v1 import cellsearch_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration


def _code_and_message(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(CellSearchError) as info:
        call()
    return info.value.code, info.value.details


def test_invalid_argument_wrong_dimension(server_env) -> None:
    with server_env.client() as client:
        code, msg = _code_and_message(lambda: client.search(np.ones((2, 64)), k=3))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "embeddings.dim is 64" in msg and "128" in msg


def test_invalid_argument_unknown_filter_term_with_suggestions(server_env, centers) -> None:
    with server_env.client() as client:
        code, msg = _code_and_message(
            lambda: client.search(centers["T cell"], k=3, filter={"tissues": ["lungg"]})
        )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "tissues" in msg and "lungg" in msg


def test_invalid_argument_exclude_query_studies_needs_stored_cells(server_env, centers) -> None:
    with server_env.client() as client:
        code, msg = _code_and_message(
            lambda: client.search(centers["T cell"], k=3, filter={"exclude_query_studies": True})
        )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "stored cell ids" in msg


def test_not_found_unknown_query_cell_and_job(server_env) -> None:
    with server_env.client() as client:
        code, msg = _code_and_message(lambda: client.search(["no-such-cell"], k=3))
        assert code == grpc.StatusCode.NOT_FOUND
        assert "no-such-cell" in msg
        code, msg = _code_and_message(lambda: client.get_job("deadbeef"))
        assert code == grpc.StatusCode.NOT_FOUND
        assert "deadbeef" in msg
        code, msg = _code_and_message(lambda: client.delete_dataset("nope/d9"))
        assert code == grpc.StatusCode.NOT_FOUND
        assert "nope/d9" in msg


def test_failed_precondition_empty_reference(server_env, centers) -> None:
    with server_env.client() as client:
        code, msg = _code_and_message(
            lambda: client.annotate(
                centers["T cell"][None, :], filter={"tissues": ["lung"], "studies": ["pbmc"]}
            )
        )
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "reference is empty" in msg


def test_resource_exhausted_k_and_batch_limits(server_env, centers) -> None:
    with server_env.client() as client:
        code, msg = _code_and_message(lambda: client.search(centers["T cell"], k=101))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "k=101" in msg and "CELLSEARCH_MAX_K" in msg
        code, msg = _code_and_message(lambda: client.search(np.tile(centers["T cell"], (51, 1))))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "51 query cells" in msg and "split" in msg


def test_resource_exhausted_message_size(server_env) -> None:
    # The server takes at most 64 MiB per message; this query is 70 MiB of floats.
    huge = np.ones((140_000, 128), dtype=np.float32)
    assert huge.nbytes > server_env.settings.max_message_bytes
    with CellSearchClient(server_env.address, token="test-token-0123") as client:
        code, msg = _code_and_message(lambda: client.search(huge, k=1))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in msg


def test_unauthenticated_without_or_with_a_wrong_token(server_env) -> None:
    with server_env.client(token=None) as client:
        code, msg = _code_and_message(client.ping)
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert "authorization: Bearer" in msg
    with server_env.client(token="wrong") as client:
        code, msg = _code_and_message(client.stats)
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert "not valid" in msg
    # Streaming RPCs are guarded too.
    with grpc.insecure_channel(server_env.address) as channel:
        stub = pb_grpc.CellSearchStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            list(stub.Annotate(iter([pb.AnnotateRequest()]), timeout=5))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_unavailable_when_the_broker_is_down(settings, atlas_free_store) -> None:
    """The default submit (Celery by task name) against a broker that does not answer."""
    from cellsearch.platform.jobs import MemoryJobStore
    from services.search.server import build_server

    dead = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    (settings.allowed_roots[0] / "x.h5ad").write_bytes(b"")
    jobs = MemoryJobStore()
    server, port = build_server(dead, store=atlas_free_store, jobs=jobs)
    try:
        with CellSearchClient(f"127.0.0.1:{port}", timeout=30) as client:
            code, msg = _code_and_message(
                lambda: client.submit_ingestion(settings.allowed_roots[0] / "x.h5ad", "s1")
            )
    finally:
        server.stop(grace=None).wait()
    assert code == grpc.StatusCode.UNAVAILABLE
    assert "broker" in msg and "retry" in msg
    (job,) = jobs.list_jobs()
    assert job.state == "FAILED"
    assert job.error_code == "unavailable"
