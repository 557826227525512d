"""Name lookup: labels and synonyms, case- and space-insensitive, with close-match suggestions.

Tiers, first hit wins: labels of live terms, then synonyms of live terms, then labels and
synonyms of obsolete terms. So "idiopathic pulmonary fibrosis" finds the live MONDO:0800504
before the obsolete MONDO:0008345 whose label it also is, and a term's own label beats another
term's synonym (MONDO lists "interstitial lung disease" as a synonym of more than one term).
"""

from __future__ import annotations

import difflib
from collections import defaultdict
from collections.abc import Sequence

OBSOLETE_PREFIX = "obsolete "


def normalise(text: str) -> str:
    """Casefold and collapse runs of whitespace: the key every name is matched on."""
    return " ".join(text.casefold().split())


class NameIndex:
    """Normalised name -> term indices, per tier; built once per ontology on first lookup."""

    def __init__(
        self,
        labels: Sequence[str],
        synonyms: dict[int, list[str]],
        deprecated: Sequence[bool],
    ) -> None:
        self.labels: dict[str, list[int]] = defaultdict(list)
        self.synonyms: dict[str, list[int]] = defaultdict(list)
        self.obsolete: dict[str, list[int]] = defaultdict(list)
        for i, text in enumerate(labels):
            if deprecated[i]:
                name = normalise(text)
                self._add(self.obsolete, name.removeprefix(OBSOLETE_PREFIX), i)
            else:
                self._add(self.labels, normalise(text), i)
        for i, names in synonyms.items():
            tier = self.obsolete if deprecated[i] else self.synonyms
            for text in names:
                self._add(tier, normalise(text), i)
        self._tokens: dict[str, set[str]] | None = None

    @staticmethod
    def _add(tier: dict[str, list[int]], name: str, i: int) -> None:
        if name and i not in tier[name]:
            tier[name].append(i)

    def lookup(self, text: str) -> tuple[str, list[int]]:
        """``(tier, indices)`` of the first tier holding the name; ``("", [])`` when none does."""
        name = normalise(text)
        for tier_name, tier in (
            ("label", self.labels),
            ("synonym", self.synonyms),
            ("obsolete", self.obsolete),
        ):
            hits = tier.get(name)
            if hits:
                return tier_name, hits
        return "", []

    def suggest(self, text: str, limit: int = 5) -> list[int]:
        """Term indices whose live names are closest to ``text`` (difflib, shared words)."""
        name = normalise(text)
        if self._tokens is None:
            tokens: dict[str, set[str]] = defaultdict(set)
            for known in (*self.labels, *self.synonyms):
                for word in known.split():
                    tokens[word].add(known)
            self._tokens = tokens
        pool: set[str] = set()
        for word in name.split():
            pool |= self._tokens.get(word, set())
        candidates = sorted(pool) if pool else sorted(self.labels)
        close = difflib.get_close_matches(name, candidates, n=limit * 2, cutoff=0.5)
        out: list[int] = []
        for match in close:
            for i in self.labels.get(match) or self.synonyms.get(match) or ():
                if i not in out:
                    out.append(i)
        return out[:limit]
