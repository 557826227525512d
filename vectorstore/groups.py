"""Payload groups: compile any metadata filter to one integer condition.

Every payload field but ``cell_id`` is shared by the cells of one sample and cell type, so
an atlas of a million cells holds only thousands to tens of thousands of distinct payloads
("groups"). The embedded store keeps that small table in memory (and in a JSON-lines file
beside the shard), tags every point with its group's id in the integer field
:data:`GROUP_FIELD` (an integer index, memory-mapped like the others), and turns a
:class:`SearchFilter` into ``GROUP_FIELD in {matching group ids}`` by evaluating it on the
table.

Single conditions are sent as they are (Qdrant already walks one posting list for them).

Why: Qdrant evaluates a conjunction by walking the points of its most selective condition
and re-checking the others on each one. With memory-mapped indexes on the ancestor lists,
"tissue X and lineage Y" (1% of 1M cells) walked the ~5% of one condition at ~1 us a point.
One condition over group ids walks exactly the matching points, with nothing to re-check,
and needs no heap indexes on the list fields (~500 bytes per cell).
It also knows each filter's exact size before Qdrant runs, which the search planner uses.

The file is append-only between deletions; a group is written before any point that uses
it, so a crash can leave an unused group (harmless: it matches nothing) but never a point
whose group is missing.

Thread safety: the serving threads read the table while an ingestion thread adds groups and
a delete rewrites it. Every read and change of the in-memory table happens under one lock
(the work under it is numpy over thousands of groups: well under a millisecond), and the
file is written under a second lock, so a reader never waits for an fsync. Readers that
use a result later (post-filtering) get group *ids*, which keep their meaning when a delete
renumbers the rows (``tests/vectorstore/test_groups_concurrency.py``).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from vectorstore.types import SearchFilter

#: The integer payload field holding a point's group id (not one of the user-facing fields).
GROUP_FIELD = "payload_group"
#: Payload fields that differ from cell to cell (the rest is shared by a sample's cells of
#: one type); a filter on them cannot be decided per group.
CELL_LEVEL_FIELDS = frozenset({"cell_id"})
FILE_NAME = "payload_groups.jsonl"

_V = TypeVar("_V")


def shared_fields(payload: Mapping[str, _V]) -> dict[str, _V]:
    """The part of a payload its group shares: no cell-level field, no group id."""
    return {k: v for k, v in payload.items() if k not in CELL_LEVEL_FIELDS and k != GROUP_FIELD}


def group_id(payload: Mapping[str, object]) -> int:
    """A stable 63-bit id of a shared payload (the same in every process and run)."""
    canonical = json.dumps(
        {k: v for k, v in payload.items() if k != GROUP_FIELD}, sort_keys=True, default=str
    )
    return int.from_bytes(hashlib.blake2b(canonical.encode(), digest_size=8).digest()) >> 1


def _values(raw: object) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, list | tuple):
        return tuple(str(v) for v in raw)
    return (str(raw),)


class PayloadGroups:
    """The distinct shared payloads of one store, persisted in ``folder / FILE_NAME``.

    In memory it keeps only what filtering needs, not the payloads themselves: each group's
    id and an inverted index (field -> value -> rows of the groups holding it) that grows
    with :meth:`add`, so a store that ingests while it serves never rebuilds it. About 0.2 KB
    per group; only :meth:`remove_dataset` (rare) re-reads the file.
    """

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / FILE_NAME
        # _lock: the in-memory table (short holds); _file_lock: the file and the order of
        # changes (an add or a remove at a time, held across the fsync).
        self._lock = threading.RLock()
        self._file_lock = threading.Lock()
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch()
        with self._lock:
            self._load()

    def _load(self) -> None:
        # Compact containers: 4-byte rows and 8-byte ids (a million cells in 66,733 groups:
        # ~20 B/cell with lists of Python ints, the RAM goal is 200 B/cell in all).
        self._row_of: set[int] = set()
        self._ids = array("q")
        self._postings: dict[str, dict[str, array[int]]] = {}
        self._arrays: dict[tuple[str, str], np.ndarray] = {}
        self._id_array: np.ndarray | None = None
        self._order = np.zeros(0, dtype=np.int64)
        self._sorted_ids = np.zeros(0, dtype=np.int64)
        for gid, payload in self._read():
            self._remember(gid, payload)

    def _read(self) -> Iterator[tuple[int, dict[str, object]]]:
        with self.path.open() as fh:
            for line in fh:
                if line.strip():
                    rec = json.loads(line)
                    yield int(rec["id"]), rec["payload"]

    def __len__(self) -> int:
        with self._lock:
            return len(self._ids)

    def add(self, payloads: Iterable[Mapping[str, object]]) -> list[int]:
        """Register shared payloads (durably, before their points are written); their ids.

        The new groups reach the file (fsynced) before the in-memory table, and the caller
        writes points only after this returns: a reader never sees a group that a crash
        could lose, and a point never carries an id the file lacks.
        """
        with self._file_lock:
            ids: list[int] = []
            new: dict[int, dict[str, object]] = {}
            with self._lock:
                for payload in payloads:
                    gid = group_id(payload)
                    ids.append(gid)
                    if gid not in self._row_of and gid not in new:
                        new[gid] = {k: v for k, v in payload.items() if k != GROUP_FIELD}
            if new:
                lines = [json.dumps({"id": g, "payload": p}, default=str) for g, p in new.items()]
                with self.path.open("a") as fh:
                    fh.write("\n".join(lines) + "\n")
                    fh.flush()
                    os.fsync(fh.fileno())
                with self._lock:
                    for gid, clean in new.items():
                        self._remember(gid, clean)
            return ids

    def remove_dataset(self, dataset_id: str) -> int:
        """Forget the groups of a deleted dataset (after its points are gone); how many."""
        with self._file_lock:
            with self._lock:
                if not self._postings.get("dataset_id", {}).get(dataset_id):
                    return 0
                before = len(self._ids)
            tmp = self.path.with_suffix(".tmp")
            with tmp.open("w") as fh:
                for gid, payload in self._read():
                    if payload.get("dataset_id") != dataset_id:
                        fh.write(json.dumps({"id": gid, "payload": payload}, default=str) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            tmp.replace(self.path)
            with self._lock:
                self._load()
                return before - len(self._ids)

    def compilable(self, flt: SearchFilter) -> bool:
        """Whether the filter depends only on shared fields (not on ``cell_id``)."""
        return not (set(flt.must) | set(flt.must_not)) & CELL_LEVEL_FIELDS

    def select(self, flt: SearchFilter) -> np.ndarray:
        """Ids of the groups matching ``flt``, with :meth:`SearchFilter.matches` semantics."""
        with self._lock:
            ids: np.ndarray = self._id_view()[self._match_rows(flt)]
            return ids

    def select_sorted(self, flt: SearchFilter) -> tuple[np.ndarray, float]:
        """The matching group ids, sorted (for :func:`ids_contain`), and their share of groups.

        Ids, not rows: they stay valid while other threads add groups or a delete renumbers
        the table, so a search may keep them across its calls into the engine.
        """
        with self._lock:
            rows = self._match_rows(flt)
            share = float(rows.mean()) if rows.size else 0.0
            return np.sort(self._id_view()[rows]), share

    def match_rows(self, flt: SearchFilter) -> np.ndarray:
        """A boolean per group (in table order): does it match ``flt``."""
        with self._lock:
            return self._match_rows(flt)

    def _match_rows(self, flt: SearchFilter) -> np.ndarray:
        mask = np.ones(len(self._ids), dtype=bool)
        for name, values in flt.must.items():
            mask &= self._any_of(name, values)
        for name, values in flt.must_not.items():
            mask &= ~self._any_of(name, values)
        return mask

    def contains(self, rows_mask: np.ndarray, gids: np.ndarray) -> np.ndarray:
        """For each group id in ``gids``: is it a group whose row ``rows_mask`` marks.

        A binary search in the sorted ids (no set of tens of thousands of ids per query,
        which cost ~3 ms at 66k groups); unknown ids, and rows past the mask (groups added
        after it was computed), are False.
        """
        with self._lock:
            ids = self._id_view()
            if ids.size == 0:
                return np.zeros(len(gids), dtype=bool)
            pos = np.minimum(np.searchsorted(self._sorted_ids, gids), ids.size - 1)
            rows = self._order[pos]
            inside = rows < rows_mask.size
            marked = np.zeros(len(rows), dtype=bool)
            marked[inside] = rows_mask[rows[inside]]
            found: np.ndarray = (ids[rows] == gids) & marked
            return found

    def _id_view(self) -> np.ndarray:
        if self._id_array is None or self._id_array.size != len(self._ids):
            self._id_array = np.array(self._ids, dtype=np.int64)
            self._order = np.argsort(self._id_array, kind="stable")
            self._sorted_ids = self._id_array[self._order]
        return self._id_array

    def _any_of(self, name: str, values: Sequence[str]) -> np.ndarray:
        hit = np.zeros(len(self._ids), dtype=bool)
        postings = self._postings.get(name, {})
        for v in values:
            rows = self._arrays.get((name, v))
            if rows is None:
                rows = self._arrays[(name, v)] = np.array(postings.get(v, ()), dtype=np.int64)
            hit[rows] = True
        return hit

    def _remember(self, gid: int, payload: Mapping[str, object]) -> None:
        row = len(self._ids)
        self._row_of.add(gid)
        self._ids.append(gid)
        for name, raw in payload.items():
            field_map = self._postings.setdefault(name, {})
            for v in _values(raw):
                rows = field_map.get(v)
                if rows is None:
                    rows = field_map[v] = array("i")
                rows.append(row)
                self._arrays.pop((name, v), None)


def ids_contain(sorted_ids: np.ndarray, gids: np.ndarray) -> np.ndarray:
    """For each id in ``gids``: is it in ``sorted_ids`` (a binary search, no set)."""
    gids = np.asarray(gids, dtype=np.int64)
    if sorted_ids.size == 0:
        return np.zeros(len(gids), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_ids, gids), sorted_ids.size - 1)
    found: np.ndarray = sorted_ids[pos] == gids
    return found
