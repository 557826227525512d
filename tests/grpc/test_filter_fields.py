"""Every field of the proto's ``Filter`` is settable through the client and the CLI, and
reaches the store: each case narrows the seeded atlas to exactly the cells its rule keeps.

The cases are keyed by the proto's own field list, so a field added to the proto without a
way to set it (or a test of it) fails here.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from grpc_atlas import TOKEN, atlas_records

from cellsearch.app.cli import build_parser, filter_options, main
from cellsearch.client import make_filter
from cellsearch.v1 import cellsearch_pb2 as pb

pytestmark = pytest.mark.integration

Payload = dict
Rule = Callable[[Payload], bool]


def _under(field: str, term: str) -> Rule:
    """The cell's term is ``term`` or one of its descendants."""
    return lambda p: term in p[field]


#: proto field -> (filter dict, the cells it keeps)
CASES: dict[str, tuple[dict, Rule]] = {
    "cell_types": ({"cell_types": ["macrophage"]}, _under("cell_type_ancestors", "CL:0000235")),
    "tissues": ({"tissues": ["lung"]}, _under("tissue_ancestors", "UBERON:0002048")),
    "diseases": ({"diseases": ["ILD"]}, _under("disease_ancestors", "MONDO:0015925")),
    "studies": ({"studies": ["pbmc"]}, lambda p: p["study_id"] == "pbmc"),
    "exclude_studies": ({"exclude_studies": ["pbmc"]}, lambda p: p["study_id"] != "pbmc"),
    "donors": ({"donors": ["pbmc-donor0"]}, lambda p: p["donor_id"] == "pbmc-donor0"),
    "exclude_query_studies": ({}, lambda p: True),  # a switch for stored-cell queries: below
    "exact_terms": (
        {"cell_types": ["macrophage"], "exact_terms": True},
        lambda p: p["cell_type_id"] == "CL:0000235",
    ),
    "exclude_cell_types": (
        {"exclude_cell_types": ["T cell"]},
        lambda p: "CL:0000084" not in p["cell_type_ancestors"],
    ),
    "exclude_tissues": (
        {"exclude_tissues": ["lung"]},
        lambda p: "UBERON:0002048" not in p["tissue_ancestors"],
    ),
    "exclude_diseases": (
        {"exclude_diseases": ["ILD"]},
        lambda p: "MONDO:0015925" not in p["disease_ancestors"],
    ),
    "datasets": ({"datasets": ["pbmc/d1"]}, lambda p: p["dataset_id"] == "pbmc/d1"),
    "assays": ({"assays": ["EFO:0009922"]}, lambda p: p["assay"] == "EFO:0009922"),
}


def _expected(rule: Rule) -> int:
    return sum(rule(r.full_payload()) for r in atlas_records())


def test_the_cases_cover_every_proto_filter_field() -> None:
    assert set(CASES) == {f.name for f in pb.Filter.DESCRIPTOR.fields}


@pytest.mark.parametrize("field", sorted(f for f in CASES if CASES[f][0]))
def test_client_filter_sets_the_field_and_the_store_applies_it(server_env, field) -> None:
    spec, rule = CASES[field]
    assert getattr(make_filter(spec), field)  # the field is set on the wire
    with server_env.client() as client:
        total, _ = client.stats(filter=spec, by=["study"])
    expected = _expected(rule)
    assert 0 < expected < len(atlas_records()) or field == "assays"
    assert total == expected


def test_exclude_query_studies_through_the_client(server_env) -> None:
    spec = {"cell_types": ["T cell"], "exclude_query_studies": True}
    assert make_filter(spec).exclude_query_studies
    with server_env.client() as client:
        hits = client.search(["pbmc-T_cell-0"], k=30, filter=spec)
        kept = client.search(["pbmc-T_cell-0"], k=30, filter={"cell_types": ["T cell"]})
    assert len(hits) == 30 and "pbmc" not in set(hits["study_id"])
    assert "pbmc" in set(kept["study_id"])


def test_every_filter_field_has_a_cli_option() -> None:
    flags = {dest: flag for flag, dest, _ in filter_options()}
    assert set(flags) == {f.name for f in pb.Filter.DESCRIPTOR.fields}
    for flag, dest, switch in filter_options():
        argv = ["stats", flag] if switch else ["stats", flag, "x"]
        args = build_parser().parse_args(argv)
        assert getattr(args, dest) == (True if switch else ["x"])


@pytest.mark.parametrize("field", sorted(f for f in CASES if CASES[f][0]))
def test_cli_filter_options_reach_the_store(server_env, capsys, field) -> None:
    spec, rule = CASES[field]
    flags = {dest: (flag, switch) for flag, dest, switch in filter_options()}
    argv = ["--address", server_env.address, "--token", TOKEN, "stats", "--by", "study"]
    for key, value in spec.items():
        flag, switch = flags[key]
        argv += [flag] if switch else [arg for v in value for arg in (flag, v)]
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith(f"{_expected(rule)} cells")
