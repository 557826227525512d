"""Batches balanced across cell types and studies.

Drawing cells uniformly lets abundant types from big studies fill every batch;
rare types then rarely meet a positive from another study and small studies
barely shape the embedding. Here each batch picks types uniformly (among those
with cells), and for each type spreads its ``cells_per_type`` draws over the
studies holding it, so in-batch mining always has cross-study positives when
they exist.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import numpy as np


class BalancedBatchSampler:
    """Yields arrays of cell indices, ``batch_size`` at a time, forever or ``n_batches``."""

    def __init__(
        self,
        labels: np.ndarray,
        studies: np.ndarray,
        *,
        batch_size: int,
        cells_per_type: int = 8,
        seed: int = 0,
    ) -> None:
        if batch_size < 2 or cells_per_type < 2:
            msg = f"batch_size ({batch_size}) and cells_per_type ({cells_per_type}) must be >= 2"
            raise ValueError(msg)
        self.batch_size = int(batch_size)
        self.cells_per_type = int(min(cells_per_type, batch_size))
        self.rng = np.random.default_rng(seed)
        groups: dict[int, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
        for i, (lab, stu) in enumerate(zip(labels.tolist(), studies.tolist(), strict=True)):
            groups[int(lab)][int(stu)].append(i)
        if not groups:
            msg = "no cells to sample from"
            raise ValueError(msg)
        self.types = np.array(sorted(groups))
        self.cells = {
            t: {s: np.asarray(ix, dtype=np.int64) for s, ix in by_study.items()}
            for t, by_study in groups.items()
        }

    def _draw_type(self, t: int, n: int) -> np.ndarray:
        by_study = self.cells[t]
        studies = np.array(sorted(by_study))
        order = self.rng.permutation(studies)
        picks = [order[i % len(order)] for i in range(n)]
        return np.array([self.rng.choice(by_study[s]) for s in picks], dtype=np.int64)

    def batch(self) -> np.ndarray:
        """One batch of indices (types sampled without replacement while they last)."""
        n_types = max(1, self.batch_size // self.cells_per_type)
        replace = n_types > len(self.types)
        chosen = self.rng.choice(self.types, size=n_types, replace=replace)
        parts = [self._draw_type(int(t), self.cells_per_type) for t in chosen]
        out = np.concatenate(parts)
        short = self.batch_size - len(out)
        if short > 0:
            extra = self.rng.choice(self.types, size=short)
            out = np.concatenate([out, *[self._draw_type(int(t), 1) for t in extra]])
        return out[: self.batch_size]

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            yield self.batch()
