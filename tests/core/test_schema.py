"""THE payload schema covers exactly what the store indexes and what the input contract reads."""

from __future__ import annotations

from dataclasses import fields

from celldata.validate import TERM_COLUMNS
from cellsearch.platform import schema
from cellsearch.search.filters import FilterSpec
from cellsearch.v1 import cellsearch_pb2 as pb
from vectorstore.types import PAYLOAD_FIELDS


def test_the_schema_names_every_stored_payload_field() -> None:
    assert set(schema.PAYLOAD_FIELDS) == set(PAYLOAD_FIELDS)


def test_every_term_column_of_the_input_contract_feeds_a_term_field() -> None:
    fed = {col: f.kind for f in schema.FIELDS if f.kind for col in f.obs}
    assert fed == TERM_COLUMNS


def test_the_filter_keys_are_the_proto_filter_fields() -> None:
    proto = {f.name for f in pb.Filter.DESCRIPTOR.fields}
    assert set(schema.FILTER_LISTS) | set(schema.FILTER_FLAGS) == proto
    # the core's spec takes every proto field by name (plus model_version, set by operators)
    assert {f.name for f in fields(FilterSpec)} == proto | {"model_version"}
