"""Name lookup: labels and synonyms, case- and space-insensitive, with close-match suggestions.

Tiers, first hit wins: labels of live terms, then synonyms of live terms, then labels and
synonyms of obsolete terms. So "idiopathic pulmonary fibrosis" finds the live MONDO:0800504
before the obsolete MONDO:0008345 whose label it also is, and a term's own label beats another
term's synonym (MONDO lists "interstitial lung disease" as a synonym of more than one term).
"""

from __future__ import annotations

import difflib
from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np

OBSOLETE_PREFIX = "obsolete "


def normalise(text: str) -> str:
    """Casefold and collapse runs of whitespace: the key every name is matched on."""
    return " ".join(text.casefold().split())


TIER_ORDER = ("label", "synonym", "obsolete")
SEP = "\x1f"  # ASCII unit separator: never inside a label


def build_tiers(
    labels: Sequence[str], synonyms: dict[int, list[str]], deprecated: Sequence[bool]
) -> dict[str, np.ndarray]:
    """Per tier: sorted unique names (one SEP-joined blob) and a CSR of their term indices.

    Computed once, when the cache is compiled, so loading needs no normalising and no JSON.
    """
    tiers: dict[str, dict[str, list[int]]] = {name: defaultdict(list) for name in TIER_ORDER}
    for i, text in enumerate(labels):
        if deprecated[i]:
            tiers["obsolete"][normalise(text).removeprefix(OBSOLETE_PREFIX)].append(i)
        else:
            tiers["label"][normalise(text)].append(i)
    for i, names in synonyms.items():
        tier = tiers["obsolete"] if deprecated[i] else tiers["synonym"]
        for text in names:
            tier[normalise(text)].append(i)
    out: dict[str, np.ndarray] = {}
    for name, tier in tiers.items():
        keys = sorted(k for k in tier if k)
        hits = [sorted(set(tier[k])) for k in keys]
        out[f"names_{name}"] = join_strings(keys)
        out[f"names_{name}_ptr"] = np.cumsum([0, *map(len, hits)], dtype=np.int64)
        out[f"names_{name}_idx"] = np.asarray([i for h in hits for i in h], dtype=np.int32)
    return out


def join_strings(items: Sequence[str]) -> np.ndarray:
    """Strings -> one uint8 array (SEP-joined UTF-8), the cheapest form to store and reload."""
    return np.frombuffer(SEP.join(items).encode("utf-8"), dtype=np.uint8)


def split_strings(blob: np.ndarray) -> list[str]:
    """The inverse of ``join_strings``."""
    text = blob.tobytes().decode("utf-8")
    return text.split(SEP) if text else []


class _Tier:
    def __init__(self, names: list[str], ptr: np.ndarray, idx: np.ndarray) -> None:
        self.names = names
        self.pos = {name: k for k, name in enumerate(names)}
        self.ptr = ptr.tolist()
        self.idx = idx

    def get(self, name: str) -> list[int]:
        k = self.pos.get(name)
        return [] if k is None else self.idx[self.ptr[k] : self.ptr[k + 1]].tolist()


class NameIndex:
    """Lookup over the name tiers, plus close-match suggestions for names that miss."""

    def __init__(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.tiers = {
            name: _Tier(
                split_strings(arrays[f"names_{name}"]),
                arrays[f"names_{name}_ptr"],
                arrays[f"names_{name}_idx"],
            )
            for name in TIER_ORDER
        }
        self._tokens: dict[str, set[str]] | None = None

    def lookup(self, text: str) -> tuple[str, list[int]]:
        """``(tier, indices)`` of the first tier holding the name; ``("", [])`` when none does."""
        name = normalise(text)
        for tier_name in TIER_ORDER:
            hits = self.tiers[tier_name].get(name)
            if hits:
                return tier_name, hits
        return "", []

    def suggest(self, text: str, limit: int = 5) -> list[int]:
        """Term indices whose live names are closest to ``text`` (difflib, shared words)."""
        name = normalise(text)
        if self._tokens is None:
            tokens: dict[str, set[str]] = defaultdict(set)
            for known in (*self.tiers["label"].names, *self.tiers["synonym"].names):
                for word in known.split():
                    tokens[word].add(known)
            self._tokens = tokens
        pool: set[str] = set()
        for word in name.split():
            pool |= self._tokens.get(word, set())
        candidates = sorted(pool) if pool else self.tiers["label"].names
        close = difflib.get_close_matches(name, candidates, n=limit * 2, cutoff=0.5)
        out: list[int] = []
        for match in close:
            for i in self.tiers["label"].get(match) or self.tiers["synonym"].get(match):
                if i not in out:
                    out.append(i)
        return out[:limit]
