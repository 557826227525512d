"""CELLxGENE files as they are: ``unknown`` cell types are stored (searchable, never voters)
and a file's own ``study_id`` column is kept unless the job's metadata overrides it."""

from __future__ import annotations

import anndata as ad
import pytest
from workers_testkit import TinyEncoder, write_h5ad

from cellsearch.ingest.pipeline import IngestOptions, ingest
from cellsearch.platform.jobs import JobState, MemoryJobStore
from vectorstore import SearchFilter, open_store

N = 60


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = open_store(path=tmp_path_factory.mktemp("store"))
    yield s
    s.close()


def _cellxgene_file(path):
    write_h5ad(path, N)
    adata = ad.read_h5ad(path)
    types = adata.obs["cell_type_ontology_term_id"].astype(str).to_numpy()
    types[::4] = "unknown"  # CELLxGENE's cell without a type
    adata.obs["cell_type_ontology_term_id"] = types
    adata.obs["study_id"] = "own-study"
    adata.write_h5ad(path)
    return path


@pytest.mark.parametrize(("metadata", "study"), [({}, "own-study"), ({"study_id": "over"}, "over")])
def test_unknown_types_are_stored_and_the_files_study_is_kept(tmp_path, store, metadata, study):
    path = _cellxgene_file(tmp_path / "cxg.h5ad")
    jobs = MemoryJobStore()
    dataset = f"cxg-{study}"
    job = jobs.create(path=str(path), study_id="S1", dataset_id=dataset, metadata=metadata)
    options = IngestOptions(
        allowed_roots=(tmp_path,),
        chunk_cells=32,
        embed_batch_size=16,
        validator=None,  # the default (full) validation
        optimize=False,
    )
    done = ingest(job.job_id, jobs=jobs, store=store, encoder=TinyEncoder(), options=options)
    assert done.state is JobState.SUCCEEDED, done.error
    unknown = SearchFilter(must={"dataset_id": [dataset], "cell_type_id": ["unknown"]})
    assert store.count(unknown) == N // 4
    (hit,) = store.retrieve([(dataset, "c000000")])
    assert hit.payload["cell_type_id"] == "unknown" and hit.payload["cell_type_ancestors"] == []
    assert hit.payload["study_id"] == study


def test_metadata_defaults_fill_a_column_the_file_lacks(tmp_path, store):
    path = write_h5ad(tmp_path / "no-tissue.h5ad", N)
    adata = ad.read_h5ad(path)
    del adata.obs["tissue_ontology_term_id"]
    adata.write_h5ad(path)
    jobs = MemoryJobStore()
    lung = {"tissue_ontology_term_id": "UBERON:0002048"}
    job = jobs.create(path=str(path), study_id="S1", dataset_id="meta", metadata=lung)
    options = IngestOptions(
        allowed_roots=(tmp_path,),
        chunk_cells=32,
        embed_batch_size=16,
        validator=None,  # the default (full) validation, given the job's metadata
        optimize=False,
    )
    done = ingest(job.job_id, jobs=jobs, store=store, encoder=TinyEncoder(), options=options)
    assert done.state is JobState.SUCCEEDED, done.error
    (hit,) = store.retrieve([("meta", "c000001")])
    assert hit.payload["tissue_id"] == "UBERON:0002048"
    assert "UBERON:0000062" in hit.payload["tissue_ancestors"]  # organ
