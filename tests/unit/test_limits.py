"""The request budget and the metadata rules (cellsearch.platform.limits)."""

from __future__ import annotations

import pytest

from cellsearch.ingest.pipeline import REEMBED_KEY
from cellsearch.platform.limits import (
    RESERVED_METADATA_KEYS,
    LimitExceededError,
    ReservedFieldError,
    check_budget,
    check_metadata,
)

LIMITS = {"max_k": 10_000, "max_query_cells": 10_000, "max_hits": 200_000}


def test_the_reembed_key_is_reserved():
    assert REEMBED_KEY in RESERVED_METADATA_KEYS
    with pytest.raises(ReservedFieldError, match="reserved for the platform"):
        check_metadata({REEMBED_KEY: "x"}, max_entries=64, max_bytes=16_384)


@pytest.mark.parametrize("key", ["model_version", "payload_group", "_private", "cellsearch.x"])
def test_other_reserved_keys(key):
    with pytest.raises(ReservedFieldError):
        check_metadata({key: "x"}, max_entries=64, max_bytes=16_384)


def test_metadata_size_limits():
    check_metadata({"tissue": "lung"}, max_entries=1, max_bytes=100)
    with pytest.raises(LimitExceededError, match="2 entries"):
        check_metadata({"a": "1", "b": "2"}, max_entries=1, max_bytes=100)
    with pytest.raises(LimitExceededError, match="bytes"):
        check_metadata({"a": "x" * 40_000_000}, max_entries=64, max_bytes=16_384)


def test_thirty_vectors_at_k_ten_thousand_is_over_budget():
    with pytest.raises(LimitExceededError, match="300,000 neighbours"):
        check_budget(n_cells=30, k=10_000, max_reply_bytes=64 << 20, **LIMITS)


def test_the_reply_size_is_checked_before_the_work():
    check_budget(n_cells=10, k=1000, max_reply_bytes=64 << 20, **LIMITS)
    with pytest.raises(LimitExceededError, match="message limit"):
        check_budget(n_cells=100, k=1000, with_vectors=True, max_reply_bytes=64 << 20, **LIMITS)


def test_a_centroid_returns_k_hits_only():
    check_budget(n_cells=100, k=1000, returned_hits=1000, max_reply_bytes=1 << 20, **LIMITS)


def test_k_and_cells_are_still_limited_alone():
    with pytest.raises(LimitExceededError, match="k=20000"):
        check_budget(n_cells=1, k=20_000, max_reply_bytes=64 << 20, **LIMITS)
    with pytest.raises(LimitExceededError, match="20000 query cells"):
        check_budget(n_cells=20_000, k=1, max_reply_bytes=64 << 20, **LIMITS)
