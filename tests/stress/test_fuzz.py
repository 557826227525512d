"""Property: any mutation of a valid .h5ad ends in a specific error code with nothing stored,
or in success with exactly the file's cells.

Hypothesis mutates the values (NaN, inf, negative, fractional, 1e30, zero), the cell ids
(empty, duplicated), the obs columns (unknown, wrong-kind, obsolete terms, a dropped
column, bad assays), the genes and the structure (truncation, a wrong shape, a broken
``indptr``) of a small valid file, and runs the real pipeline (real validation, real store)
on it. ``internal`` is never an acceptable ending: every defect has its own code.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from workers_testkit import TinyEncoder, write_h5ad

from celldata.read import iter_chunks
from cellsearch.ingest.pipeline import IngestOptions, ingest
from cellsearch.platform.jobs import JobState, MemoryJobStore
from vectorstore import SearchFilter, open_store

pytestmark = [pytest.mark.stress, pytest.mark.slow]

N = 120
VALUES = [np.nan, np.inf, -np.inf, -1.0, 0.5, 1e30, 3.0, 0.0]
TERMS = {
    "cell_type_ontology_term_id": ["CL:9999999", "not a term", "UBERON:0002048", "CL:0000003"],
    "tissue_ontology_term_id": ["UBERON:9999999", "CL:0000236", ""],
    "disease_ontology_term_id": ["MONDO:9999999", "PATO:0000461"],
    "assay_ontology_term_id": ["EFO:9999999", "10x", "EFO:0009899"],
}

MUTATIONS = st.one_of(
    st.tuples(st.just("value"), st.integers(0, 10**6), st.sampled_from(VALUES)),
    st.tuples(st.just("cell_id"), st.integers(0, N - 1), st.sampled_from(["", "dup", " "])),
    st.tuples(
        st.just("term"),
        st.sampled_from(sorted(TERMS)),
        st.integers(0, 10),
    ),
    st.tuples(st.just("drop"), st.sampled_from(["donor_id", "cell_type_ontology_term_id"])),
    st.tuples(st.just("genes"), st.sampled_from(["mouse", "few"])),
    st.tuples(st.just("truncate"), st.floats(0.05, 0.95)),
    st.tuples(st.just("shape"), st.integers(-3, 3).filter(bool)),
    st.tuples(st.just("indptr"), st.integers(1, N - 1)),
)


def mutate(path: Path, mutation: tuple) -> None:
    kind, *args = mutation
    if kind == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * args[0])])
        return
    with h5py.File(path, "r+") as f:
        if kind == "value":
            data = f["X/data"]
            data[args[0] % len(data)] = args[1]
        elif kind == "cell_id":
            index = f["obs/_index"]
            ids = index[()].astype(object)
            row = args[0]
            ids[row] = ids[(row + 1) % N] if args[1] == "dup" else args[1].encode()
            del f["obs/_index"]
            f["obs"].create_dataset("_index", data=ids.astype("S"))
        elif kind == "term":
            column, choice = args
            values = TERMS[column]
            cats = f[f"obs/{column}/categories"]
            new = cats[()].astype(object)
            new[choice % len(new)] = values[choice % len(values)].encode()
            attrs = dict(cats.attrs)
            del f[f"obs/{column}/categories"]
            ds = f[f"obs/{column}"].create_dataset("categories", data=new.astype("S"))
            ds.attrs.update(attrs)
        elif kind == "drop":
            del f[f"obs/{args[0]}"]
        elif kind == "genes":
            var = f["var/_index"]
            genes = var[()].astype(object)
            if args[0] == "mouse":
                genes = np.array([f"Gm{i}".encode() for i in range(len(genes))], dtype=object)
            else:
                genes[1:] = [f"NOTAGENE{i}".encode() for i in range(len(genes) - 1)]
            del f["var/_index"]
            f["var"].create_dataset("_index", data=genes.astype("S"))
        elif kind == "shape":
            shape = f["X"].attrs["shape"]
            f["X"].attrs["shape"] = np.array([shape[0] + args[0], shape[1]])
        elif kind == "indptr":
            indptr = f["X/indptr"]
            indptr[args[0]] = indptr[args[0] + 1] + 5  # decreasing: rows overlap


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz")
    good = write_h5ad(base / "good.h5ad", N)
    ids = [str(c) for c in next(iter_chunks(good, chunk_size=N)).obs.index]
    store = open_store(path=base / "store")
    yield base, good, ids, store
    store.close()
    print(f"\nfuzz outcomes ({sum(TALLY.values())} files): {dict(sorted(TALLY.items()))}")


TALLY: Counter[str] = Counter()


_counter = iter(range(10**9))


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
@given(mutations=st.lists(MUTATIONS, min_size=1, max_size=2))
def test_every_mutation_ends_in_a_code_or_the_exact_cells(world, mutations):
    base, good, ids, store = world
    inbox = base / "inbox"
    inbox.mkdir(exist_ok=True)
    n = next(_counter)
    path = inbox / f"m{n}.h5ad"
    shutil.copy(good, path)
    for mutation in mutations:
        try:
            mutate(path, mutation)
        except (OSError, KeyError):  # an earlier mutation truncated the file
            break
    jobs = MemoryJobStore()
    dataset = f"fuzz{n}"
    job = jobs.create(path=str(path), study_id="S", dataset_id=dataset, metadata={})
    options = IngestOptions(allowed_roots=(inbox,), chunk_cells=50, optimize=False)
    done = ingest(job.job_id, jobs=jobs, store=store, encoder=TinyEncoder(), options=options)
    stored = store.count(SearchFilter(must={"dataset_id": [dataset]}))
    TALLY[done.error_code or "succeeded"] += 1
    TALLY["cells stored by failed jobs"] += stored if done.state is JobState.FAILED else 0
    if done.state is JobState.SUCCEEDED:
        hits = store.retrieve([(dataset, c) for c in ids], with_vectors=False)
        assert stored == done.cells_done == N, (mutations, stored)
        assert sorted(h.cell_id for h in hits) == sorted(ids), mutations
        store.delete_dataset(dataset)
    else:
        assert done.state is JobState.FAILED
        assert done.error_code and done.error_code != "internal", (mutations, done.error)
        assert stored == 0, (mutations, done.error_code)
