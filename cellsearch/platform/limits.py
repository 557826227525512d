"""What a client may ask for: the one request budget and the rules on submitted metadata.

Both are checked before any work starts, in the service (and by anything else that takes
requests from outside), so a 15 KB request cannot cost gigabytes and no client field can
choose internal behaviour.

Guarantees (tests/unit/test_limits.py, tests/stress/test_abuse.py):

* **One budget per request.** ``query cells x k`` (the neighbours searched and, for a
  search, returned) is bounded by ``max_request_hits``, and the expected size of the reply
  by the message limit, besides the separate ``max_k`` and ``max_query_cells``: 30 vectors
  x k=10,000 is refused at once instead of running 33 s and 3.5 GB.
* **Reserved metadata keys are refused.** Keys the platform itself writes (re-embedding of
  an existing dataset, the model version, the payload group) can only come from the
  platform: a submission carrying one is refused, so no client can merge its cells into
  another client's dataset.
* **Metadata is small.** At most ``max_metadata_entries`` entries and ``max_metadata_bytes``
  of keys and values, so one client cannot make ``ListDatasets`` fail for every client.
"""

from __future__ import annotations

from collections.abc import Mapping

from cellsearch.platform.errors import InvalidRequestError, LimitError

#: Metadata keys only the platform writes (``cellsearch.ingest.pipeline.REEMBED_KEY`` among them).
RESERVED_METADATA_KEYS: frozenset[str] = frozenset(
    {"reembed_of_model", "model_version", "payload_group", "dataset_id", "job_id", "cell_id"}
)
#: Reserved key prefixes (room for future internal keys).
RESERVED_METADATA_PREFIXES: tuple[str, ...] = ("cellsearch.", "_")

#: Bytes of one hit in a reply without its vector (ids, terms, labels; measured ~150-350).
HIT_BYTES = 400
#: Extra bytes of a hit that carries its 128-d float32 vector.
VECTOR_BYTES = 128 * 4 + 8


class LimitExceededError(LimitError):
    """A request over a configured budget (RESOURCE_EXHAUSTED): split or shrink it."""


class ReservedFieldError(InvalidRequestError):
    """A client field the platform reserves for itself (INVALID_ARGUMENT)."""


def check_metadata(metadata: Mapping[str, str], *, max_entries: int, max_bytes: int) -> None:
    """Refuse reserved keys and oversized metadata of a submission, before a job exists."""
    for key in metadata:
        if key in RESERVED_METADATA_KEYS or key.startswith(RESERVED_METADATA_PREFIXES):
            msg = (
                f"metadata key {key!r} is reserved for the platform (reserved: "
                f"{', '.join(sorted(RESERVED_METADATA_KEYS))}, and keys starting with "
                f"{' or '.join(RESERVED_METADATA_PREFIXES)}); rename it. To re-embed a "
                "dataset, an operator runs the re-embed job"
            )
            raise ReservedFieldError(msg)
    if len(metadata) > max_entries:
        msg = (
            f"metadata has {len(metadata)} entries, over the limit of {max_entries} "
            "(CELLSEARCH_MAX_METADATA_ENTRIES); keep study-level facts only"
        )
        raise LimitExceededError(msg)
    size = sum(len(k.encode()) + len(v.encode()) for k, v in metadata.items())
    if size > max_bytes:
        msg = (
            f"metadata holds {size:,} bytes, over the limit of {max_bytes:,} "
            "(CELLSEARCH_MAX_METADATA_BYTES); keep study-level facts only, not data"
        )
        raise LimitExceededError(msg)


def reply_bytes(hits: int, *, with_vectors: bool) -> int:
    """An upper estimate of a reply carrying ``hits`` hits."""
    return hits * (HIT_BYTES + (VECTOR_BYTES if with_vectors else 0))


def check_budget(
    *,
    n_cells: int,
    k: int,
    max_k: int,
    max_query_cells: int,
    max_hits: int,
    max_reply_bytes: int,
    returned_hits: int | None = None,
    with_vectors: bool = False,
) -> None:
    """Refuse a request whose total work or reply is over budget, before any of it is done.

    ``n_cells x k`` neighbours are searched; ``returned_hits`` (default the same) come back
    in the reply (a centroid search returns ``k``, an annotation none).
    """
    if k > max_k:
        msg = (
            f"k={k} is over this server's limit of {max_k} neighbours per query cell; ask "
            "for fewer (the limit is CELLSEARCH_MAX_K)"
        )
        raise LimitExceededError(msg)
    if n_cells > max_query_cells:
        msg = (
            f"the request holds {n_cells} query cells, over this server's limit of "
            f"{max_query_cells} per request; split it into batches (the limit is "
            "CELLSEARCH_MAX_QUERY_CELLS)"
        )
        raise LimitExceededError(msg)
    work = n_cells * k
    if work > max_hits:
        msg = (
            f"{n_cells} query cells x k={k} = {work:,} neighbours, over this server's budget "
            f"of {max_hits:,} per request (CELLSEARCH_MAX_REQUEST_HITS); send at most "
            f"{max(1, max_hits // max(k, 1))} cells per request at this k, or a smaller k"
        )
        raise LimitExceededError(msg)
    hits = work if returned_hits is None else returned_hits
    size = reply_bytes(hits, with_vectors=with_vectors)
    if size > max_reply_bytes:
        msg = (
            f"the reply would hold {hits:,} hits (~{size / 1e6:.0f} MB"
            f"{' with vectors' if with_vectors else ''}), over this server's message limit "
            f"of {max_reply_bytes / 1e6:.0f} MB; ask for fewer cells or neighbours per "
            "request, or leave out the vectors"
        )
        raise LimitExceededError(msg)
