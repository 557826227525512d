"""The in-process API as a notebook uses it: no server, no Redis; then the same calls through
the client against a server over the same atlas folder give the same answers."""

from __future__ import annotations

import numpy as np
import pytest
from testkit import start_serve

import ontology
from celldata.simulate import simulate_atlas
from cellsearch import Atlas, CellSearchClient
from cellsearch.platform.errors import InvalidRequestError, JobFailedError
from cellsearch.platform.settings import Settings

pytestmark = pytest.mark.integration

NO_REDIS = "redis://127.0.0.1:1/0"  # nothing listens there: any use of Redis would fail
LUNG = "UBERON:0002048"


@pytest.fixture(scope="module")
def data():
    """Four studies of a simulated atlas: three to ingest, the fourth to query."""
    adata = simulate_atlas(1600, 4, seed=3)
    studies = adata.obs["study_id"].astype(str)
    ref = adata[studies != "study003"].copy()
    query = adata[studies == "study003"].copy()
    return ref, query


@pytest.fixture(scope="module")
def model():
    """The bundled default model (trained on the simulated atlas's genes, among others)."""
    import encoder

    return encoder.load_default()


@pytest.fixture(scope="module")
def built(tmp_path_factory, data, model):
    """An atlas folder built in process; yields (folder, settings, the notebook's answers)."""
    root = tmp_path_factory.mktemp("atlas")
    settings = Settings(
        redis_url=NO_REDIS, ontology_cache_dir=root / "ontology-cache", grpc_address="127.0.0.1:0"
    )
    ref, query = data
    with Atlas(root / "atlas", model=model, settings=settings) as atlas:
        job = atlas.ingest(ref, study="ref", dataset="ref/cells", progress=False)
        answers = {
            "job": job,
            "total": atlas.stats()[0],
            "search": atlas.search(query[:5], k=10, filter={"tissues": ["lung"]}),
            "by_id": atlas.search([("ref/cells", str(ref.obs_names[0]))], k=5),
            "annotate": atlas.annotate(query, key_added="cs"),
            "embed": atlas.embed(query[:20]),
            "query": query,
        }
    return root / "atlas", settings, answers


def test_atlas_ingests_searches_and_annotates_in_process(built, data) -> None:
    _, _, got = built
    ref, query = data
    assert got["job"].state == "SUCCEEDED" and got["job"].cells_done == ref.n_obs
    assert got["total"] == ref.n_obs

    hits = got["search"]
    assert list(hits.columns[:6]) == ["query", "rank", "cell_id", "dataset_id", "score", "distance"]
    assert list(dict.fromkeys(hits["query"])) == [str(c) for c in query.obs_names[:5]]
    assert len(hits) == 50 and set(hits["tissue_id"]) == {LUNG} and set(hits["tissue"]) == {"lung"}
    assert hits.groupby("query")["score"].apply(lambda s: s.is_monotonic_decreasing).all()

    by_id = got["by_id"]
    assert len(by_id) == 5 and str(ref.obs_names[0]) not in set(by_id["cell_id"])

    ann = got["annotate"]
    assert list(ann.index) == [str(c) for c in query.obs_names]
    truth = query.obs["true_cell_type_ontology_term_id"].astype(str)
    known = ~ann["unknown"].to_numpy()
    assert known.mean() > 0.5
    # the query study's types are partly absent from the reference, so a coarser label
    # ("epithelial cell" for a proximal tubule cell) is right; an unrelated one is wrong
    compatible = [
        p in ontology.ancestors(t) or t in ontology.ancestors(p)
        for p, t in zip(ann["cell_type_id"][known], truth[known], strict=True)
    ]
    assert np.mean(compatible) > 0.7, np.mean(compatible)

    annotated = got["query"]
    assert list(annotated.obs["cs_cell_type_id"]) == list(ann["cell_type_id"])
    assert annotated.obsm["X_cs"].shape == (query.n_obs, 128)
    assert annotated.uns["cs"]["model_version"] == ann.attrs["model_version"] != ""

    vectors = got["embed"]
    assert vectors.shape == (20, 128)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert np.allclose(vectors, annotated.obsm["X_cs"][:20], atol=1e-5)


def test_bad_input_is_refused_and_stores_nothing(tmp_path, data, model) -> None:
    ref, _ = data
    settings = Settings(redis_url=NO_REDIS, ontology_cache_dir=tmp_path / "ontology-cache")
    lognorm = ref[:50].copy()
    lognorm.X = np.log1p(lognorm.X)
    with Atlas(tmp_path / "atlas", model=model, settings=settings) as atlas:
        with pytest.raises(JobFailedError) as failed:
            atlas.ingest(lognorm, study="bad", progress=False)
        assert failed.value.code in {"not_raw_counts", "non_integer_counts"}, failed.value
        assert atlas.stats()[0] == 0 and atlas.list_datasets().empty
        with pytest.raises(InvalidRequestError, match="unknown filter keys"):
            atlas.search(np.ones((1, 128)), filter={"tissue": ["lung"]})


def test_a_multi_study_file_ingests_without_a_study_and_keeps_its_own(
    tmp_path, data, model
) -> None:
    """``cellsearch ingest ref.h5ad`` with no ``--study``: each cell keeps the study its file
    says; a file that does not say is refused, naming the column, and nothing is stored."""
    ref, _ = data
    settings = Settings(redis_url=NO_REDIS, ontology_cache_dir=tmp_path / "ontology-cache")
    part = ref[:300].copy()
    with Atlas(tmp_path / "atlas", model=model, settings=settings) as atlas:
        job = atlas.ingest(part, progress=False)
        assert job.state == "SUCCEEDED" and job.cells_done == part.n_obs
        studies = atlas.stats(by=["study"])[1]["study"]
        expected = part.obs["study_id"].astype(str).value_counts()
        assert dict(zip(studies["id"], studies["count"], strict=True)) == expected.to_dict()

        anonymous = part.copy()
        del anonymous.obs["study_id"]
        with pytest.raises(JobFailedError, match="study_id") as failed:
            atlas.ingest(anonymous, progress=False)
        assert failed.value.code == "missing_metadata", failed.value
        assert atlas.stats()[0] == part.n_obs


def test_a_store_made_again_starts_with_an_empty_registry(tmp_path, data, model) -> None:
    """Delete the atlas's store folder and the same dataset ingests again: the registry
    beside the folder belonged to the old store. Reopening the same store keeps it."""
    import shutil

    ref, _ = data
    settings = Settings(redis_url=NO_REDIS, ontology_cache_dir=tmp_path / "ontology-cache")
    part = ref[:120].copy()
    for _ in range(2):
        with Atlas(tmp_path / "atlas", model=model, settings=settings) as atlas:
            job = atlas.ingest(part, study="s", dataset="d", progress=False)
            assert job.state == "SUCCEEDED" and atlas.stats()[0] == part.n_obs
        with Atlas(tmp_path / "atlas", model=model, settings=settings) as atlas:
            assert list(atlas.list_datasets()["dataset_id"]) == ["d"]  # same store: kept
        shutil.rmtree(tmp_path / "atlas" / "store")


def test_the_client_gives_the_same_answers_over_grpc(built, model) -> None:
    """A server over the folder the notebook built: same labels, hits and embeddings."""
    from cellsearch.app.embedded import start_platform

    folder, settings, got = built
    served = settings.model_copy(update={"store_path": folder / "store"})
    platform = start_platform(served, use_redis=False, encoder=model)
    try:
        with CellSearchClient(platform.address, timeout=60) as client:
            query = got["query"]
            total, _ = client.stats()
            hits = client.search(query[:5], k=10, filter={"tissues": ["lung"]})
            ann = client.annotate(query, batch_size=200)
            vectors = client.embed(query[:20])
    finally:
        platform.stop(grace=0)
    assert total == got["total"]
    assert list(hits["query"]) == list(got["search"]["query"])
    assert list(hits["cell_id"]) == list(got["search"]["cell_id"])
    assert list(ann.index) == list(got["annotate"].index)
    assert (ann["cell_type_id"] == got["annotate"]["cell_type_id"]).all()
    assert (ann["unknown"] == got["annotate"]["unknown"]).all()
    assert np.allclose(vectors, got["embed"], atol=1e-5)


def test_two_stores_sharing_one_redis_keep_their_own_datasets_and_jobs(
    tmp_path, data, model, redis_url
) -> None:
    """Each embedded store has its own job records, dataset registry and queues in Redis.

    Two platforms run at once on one Redis, as two ``cellsearch serve`` on one machine do
    (the other one a process of its own: one Celery worker per process). Both ingest the
    same file under the same default dataset id: each store is empty, so each must accept
    it, and every cell must land in the store whose server took the job.
    """
    import os

    from cellsearch.app.embedded import start_platform

    ref, _ = data
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    ref[:240].copy().write_h5ad(inbox / "ref.h5ad")
    mine = Settings(
        store_path=tmp_path / "a" / "store",
        redis_url=redis_url,
        allowed_roots=(inbox,),
        grpc_address="127.0.0.1:0",
        ontology_cache_dir=tmp_path / "ontology-cache",
    )
    theirs = mine.model_copy(update={"store_path": tmp_path / "b" / "store"})
    assert mine.jobs_namespace != theirs.jobs_namespace
    env = {
        **os.environ,
        "CELLSEARCH_STORE_PATH": str(theirs.store_path),
        "CELLSEARCH_REDIS_URL": redis_url,
        "CELLSEARCH_ALLOWED_ROOTS": str(inbox),
        "CELLSEARCH_GRPC_ADDRESS": "127.0.0.1:0",
        "CELLSEARCH_ONTOLOGY_CACHE_DIR": str(theirs.ontology_cache_dir),
        "CELLSEARCH_DEVICE": "cpu",
    }
    other, other_address = start_serve(env, "--worker", "redis")
    platform = start_platform(mine, use_redis=True, encoder=model)
    try:
        for address in (platform.address, other_address):
            with CellSearchClient(address, timeout=120) as client:
                job = client.ingest(inbox / "ref.h5ad", study="s", progress=False)
                assert job.state == "SUCCEEDED", job.error
                assert job.dataset_id == "s/ref"
                assert list(client.list_datasets()["dataset_id"]) == ["s/ref"]
                assert client.stats()[0] == 240
    finally:
        platform.stop(grace=0)
        other.terminate()
        other.wait(30)
