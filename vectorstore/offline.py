"""Index builds off the serving path for the embedded engine: build a copy in a subprocess, swap.

qdrant-edge 0.9 builds HNSW graphs only inside ``EdgeShard.optimize()``, a blocking call that
holds the GIL for the whole build (37 s at ~150k cells): in a process that also serves gRPC,
nothing, not even health, was answered meanwhile. It has no background optimiser and no way
to create a snapshot, and one process may open a shard at a time. So the build runs on a copy:

1. writes to the shard pause (searches go on), the shard is flushed and its folder copied
   (file I/O releases the GIL: ~1 s per 100 MB);
2. a subprocess opens the copy and optimises it (its own GIL: the serving process keeps
   answering);
3. for well under a second, searches wait while the shard is closed, the folders are swapped
   by rename and the built copy is opened; writes resume.

A crash at any step leaves either the old folder in place or ``<name>.previous`` beside the
new one; :func:`recover` (run when the store opens) puts a complete folder back. Measured in
tests/vectorstore/test_offline_build.py and benchmarks/bench_serving_ingest.py.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BUILDING = ".building"
PREVIOUS = ".previous"

#: The subprocess: open the copy, build every index the optimiser plans, close it cleanly.
_BUILD = (
    "import sys, qdrant_edge as qe\n"
    "shard = qe.EdgeShard.load(sys.argv[1])\n"
    "shard.optimize()\n"
    "shard.flush()\n"
    "shard.close()\n"
)


class BuildFailedError(RuntimeError):
    """The subprocess could not build the copy; the live shard is untouched."""


class Gate:
    """Many users at once, or one exclusive holder (a readers-writer lock, writer-preferring)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._users = 0
        self._exclusive = False
        self._waiting = 0

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._exclusive or self._waiting:
                self._cond.wait()
            self._users += 1
        try:
            yield
        finally:
            with self._cond:
                self._users -= 1
                if not self._users:
                    self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            while self._exclusive or self._users:
                self._cond.wait()
            self._waiting -= 1
            self._exclusive = True
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


def sibling(folder: Path, suffix: str) -> Path:
    return folder.with_name(folder.name + suffix)


def recover(folder: Path) -> None:
    """Undo an interrupted swap: a complete shard folder ends up at ``folder``."""
    previous, building = sibling(folder, PREVIOUS), sibling(folder, BUILDING)
    if not folder.exists() and previous.exists():
        previous.rename(folder)  # crashed between the two renames: keep the old one
    if previous.exists():
        shutil.rmtree(previous, ignore_errors=True)
    if building.exists():
        shutil.rmtree(building, ignore_errors=True)


def build_copy(folder: Path, *, timeout_s: float | None = None) -> Path:
    """Copy the (flushed) shard folder and build its indexes in a subprocess; the copy."""
    building = sibling(folder, BUILDING)
    shutil.rmtree(building, ignore_errors=True)
    shutil.copytree(folder, building)
    done = subprocess.run(
        [sys.executable, "-c", _BUILD, str(building)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0:
        shutil.rmtree(building, ignore_errors=True)
        msg = f"building the index of a copy of {folder} failed: {done.stderr[-2000:]}"
        raise BuildFailedError(msg)
    return building


def swap_in(folder: Path, built: Path) -> None:
    """Put ``built`` at ``folder`` (two renames; the old folder is removed after)."""
    previous = sibling(folder, PREVIOUS)
    shutil.rmtree(previous, ignore_errors=True)
    folder.rename(previous)
    built.rename(folder)
    shutil.rmtree(previous, ignore_errors=True)
