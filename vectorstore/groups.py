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
"""

from __future__ import annotations

import hashlib
import json
import os
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from vectorstore.types import SearchFilter

#: The integer payload field holding a point's group id (not one of the user-facing fields).
GROUP_FIELD = "payload_group"
#: Payload fields that differ from cell to cell (the rest is shared by a sample's cells of
#: one type); a filter on them cannot be decided per group.
CELL_LEVEL_FIELDS = frozenset({"cell_id"})
FILE_NAME = "payload_groups.jsonl"


def shared_fields(payload: Mapping[str, object]) -> dict:
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
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch()
        self._load()

    def _load(self) -> None:
        # Compact containers: 4-byte rows and 8-byte ids (a million cells in 66,733 groups:
        # ~20 B/cell with lists of Python ints, the RAM goal is 200 B/cell in all).
        self._row_of: set[int] = set()
        self._ids = array("q")
        self._postings: dict[str, dict[str, array]] = {}
        self._arrays: dict[tuple[str, str], np.ndarray] = {}
        self._id_array: np.ndarray | None = None
        self._order = np.zeros(0, dtype=np.int64)
        self._sorted_ids = np.zeros(0, dtype=np.int64)
        for gid, payload in self._read():
            self._remember(gid, payload)

    def _read(self) -> Iterator[tuple[int, dict]]:
        with self.path.open() as fh:
            for line in fh:
                if line.strip():
                    rec = json.loads(line)
                    yield int(rec["id"]), rec["payload"]

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, payloads: Iterable[Mapping[str, object]]) -> list[int]:
        """Register shared payloads (durably, before their points are written); their ids."""
        ids, new = [], []
        for payload in payloads:
            gid = group_id(payload)
            ids.append(gid)
            if gid not in self._row_of:
                clean = {k: v for k, v in payload.items() if k != GROUP_FIELD}
                self._remember(gid, clean)
                new.append(json.dumps({"id": gid, "payload": clean}, default=str))
        if new:
            with self.path.open("a") as fh:
                fh.write("\n".join(new) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        return ids

    def remove_dataset(self, dataset_id: str) -> int:
        """Forget the groups of a deleted dataset (after its points are gone); how many."""
        if not self._postings.get("dataset_id", {}).get(dataset_id):
            return 0
        before = len(self)
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w") as fh:
            for gid, payload in self._read():
                if payload.get("dataset_id") != dataset_id:
                    fh.write(json.dumps({"id": gid, "payload": payload}, default=str) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(self.path)
        self._load()
        return before - len(self)

    def compilable(self, flt: SearchFilter) -> bool:
        """Whether the filter depends only on shared fields (not on ``cell_id``)."""
        return not (set(flt.must) | set(flt.must_not)) & CELL_LEVEL_FIELDS

    def select(self, flt: SearchFilter) -> np.ndarray:
        """Ids of the groups matching ``flt``, with :meth:`SearchFilter.matches` semantics."""
        return self._id_view()[self.match_rows(flt)]

    def match_rows(self, flt: SearchFilter) -> np.ndarray:
        """A boolean per group (in table order): does it match ``flt``."""
        mask = np.ones(len(self._ids), dtype=bool)
        for name, values in flt.must.items():
            mask &= self._any_of(name, values)
        for name, values in flt.must_not.items():
            mask &= ~self._any_of(name, values)
        return mask

    def contains(self, rows_mask: np.ndarray, gids: np.ndarray) -> np.ndarray:
        """For each group id in ``gids``: is it a group whose row ``rows_mask`` marks.

        A binary search in the sorted ids (no set of tens of thousands of ids per query,
        which cost ~3 ms at 66k groups); unknown ids are False.
        """
        ids = self._id_view()
        if ids.size == 0:
            return np.zeros(len(gids), dtype=bool)
        pos = np.minimum(np.searchsorted(self._sorted_ids, gids), ids.size - 1)
        rows = self._order[pos]
        return (ids[rows] == gids) & rows_mask[rows]

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
