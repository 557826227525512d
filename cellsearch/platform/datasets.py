"""Remove a dataset from the atlas: its points, its registry entry and its id claim.

One function for every caller (the gRPC ``DeleteDataset``, ``Atlas.delete_dataset``), so a
deletion always ends the same way: an id that can be ingested again.
"""

from __future__ import annotations

from cellsearch.platform.jobs import JobStore
from vectorstore import CellStore


def delete_dataset(dataset_id: str, *, jobs: JobStore, store: CellStore) -> int:
    """Remove ``dataset_id``'s points, registry entry and claim; returns how many points went.

    Points go first: a crash between the steps leaves a registry entry whose delete can be
    repeated, never points that nothing lists. Raises ``DatasetNotFoundError`` for an id
    that is not registered.
    """
    entry = jobs.get_dataset(dataset_id)
    removed = store.delete_dataset(dataset_id)
    jobs.remove_dataset(dataset_id)
    jobs.release_claim(dataset_id, entry.job_id)
    return removed
