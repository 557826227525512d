"""Map a dataset's free-text labels (an ``obs`` column) to ontology term ids, with a report.

Order per distinct value: the user's mapping (a TSV file or a dict) first, because an explicit
curation must beat an automatic match; then the value itself as an id, label or synonym
(case- and space-insensitive). Whatever is left is listed, with the reason, in ``unmapped``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ontology._ids import OntologyKind, looks_like_id
from ontology._names import normalise
from ontology.errors import MappingFileError, OntologyError

if TYPE_CHECKING:
    from ontology.core import Ontology


@dataclass(frozen=True)
class MappingRow:
    """One line of a mapping file: author value, target (id or name), optional expected label."""

    value: str
    target: str
    label: str | None = None
    line: int = 0


@dataclass(frozen=True)
class LabelMapping:
    """The outcome of mapping a column: ``mapping`` (value -> id), ``unmapped`` and why."""

    kind: OntologyKind
    mapping: dict[str, str]
    unmapped: list[str]
    how: dict[str, str] = field(default_factory=dict)  # value -> mapping/id/label/synonym
    problems: dict[str, str] = field(default_factory=dict)  # unmapped value -> reason
    counts: dict[str, int] = field(default_factory=dict)  # value -> occurrences
    labels: dict[str, str] = field(default_factory=dict)  # term id -> label

    @property
    def complete(self) -> bool:
        """True when every value mapped."""
        return not self.unmapped

    def report(self) -> str:
        """A readable summary: what mapped to what and by which route, what did not and why."""
        total = sum(self.counts.values())
        mapped_n = sum(self.counts.get(v, 0) for v in self.mapping)
        lines = [
            f"{self.kind} labels: {len(self.mapping)} of {len(self.counts)} distinct values "
            f"mapped ({mapped_n} of {total} entries)"
        ]
        for value, tid in self.mapping.items():
            lines.append(
                f"  {value!r} -> {tid} ({self.labels.get(tid, '?')}) "
                f"[{self.how.get(value, '?')}, n={self.counts.get(value, 0)}]"
            )
        if self.unmapped:
            lines.append(f"unmapped ({len(self.unmapped)}):")
            lines.extend(
                f"  {v!r} (n={self.counts.get(v, 0)}): {self.problems.get(v, '')}"
                for v in self.unmapped
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.report()


def read_mapping_file(path: Path) -> list[MappingRow]:
    """Read a TSV of ``value<TAB>term[<TAB>label]``; ``#`` comments and one header line allowed.

    The optional label column is checked against the ontology when the mapping is used, so a
    typo in an id cannot silently map a value to the wrong cell type.
    """
    rows: list[MappingRow] = []
    seen: dict[str, str] = {}
    text = Path(path).read_text(encoding="utf-8")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cols = [c.strip() for c in line.split("\t")]
        if len(cols) < 2 or not cols[0] or not cols[1]:
            msg = f"{path}:{number}: expected 'value<TAB>term id[<TAB>label]', got {line!r}"
            raise MappingFileError(msg)
        if not rows and not seen and not looks_like_id(cols[1]) and cols[1].endswith("id"):
            seen[""] = ""  # header line, e.g. "author_label<TAB>term_id"
            continue
        value, target = cols[0], cols[1]
        if value in seen and seen[value] != target:
            msg = f"{path}:{number}: {value!r} mapped twice ({seen[value]} and {target})"
            raise MappingFileError(msg)
        seen[value] = target
        label = cols[2] if len(cols) > 2 and cols[2] else None
        rows.append(MappingRow(value=value, target=target, label=label, line=number))
    return rows


def _user_mapping(onto: Ontology, mapping: Mapping[str, str] | Path | str | None) -> dict[str, str]:
    """The user's mapping, every target resolved: key is the normalised author value."""
    if mapping is None:
        return {}
    if isinstance(mapping, Mapping):
        rows = [MappingRow(value=k, target=v) for k, v in mapping.items()]
        where = "mapping"
    else:
        rows = read_mapping_file(Path(mapping))
        where = str(mapping)
    out: dict[str, str] = {}
    for row in rows:
        try:
            tid = onto.resolve(row.target)
        except OntologyError as exc:
            msg = f"{where}:{row.line}: {row.value!r} maps to {row.target!r}, which fails: {exc}"
            raise MappingFileError(msg) from exc
        if row.label is not None and normalise(row.label) != normalise(onto.label(tid)):
            msg = (
                f"{where}:{row.line}: {row.value!r} -> {tid} says label {row.label!r}, "
                f"but {tid} is {onto.label(tid)!r}"
            )
            raise MappingFileError(msg)
        out[normalise(row.value)] = tid
    return out


def map_values(
    onto: Ontology,
    values: Iterable[str],
    *,
    mapping: Mapping[str, str] | Path | str | None = None,
) -> LabelMapping:
    """Map each distinct value (first-seen order kept) to a live term id of ``onto``."""
    counts: Counter[str] = Counter()
    order: list[str] = []
    for value in values:
        key = value if isinstance(value, str) else str(value)
        if key not in counts:
            order.append(key)
        counts[key] += 1
    user = _user_mapping(onto, mapping)
    mapped: dict[str, str] = {}
    how: dict[str, str] = {}
    problems: dict[str, str] = {}
    unmapped: list[str] = []
    for value in order:
        tid = user.get(normalise(value))
        if tid is not None:
            mapped[value], how[value] = tid, "mapping"
            continue
        try:
            tid = onto.resolve(value)
        except OntologyError as exc:
            unmapped.append(value)
            problems[value] = str(exc)
            continue
        mapped[value] = tid
        how[value] = "id" if looks_like_id(value) else (onto.names.lookup(value)[0] or "id")
    labels = {tid: onto.label(tid) for tid in mapped.values()}
    return LabelMapping(
        kind=onto.kind,
        mapping=mapped,
        unmapped=unmapped,
        how=how,
        problems=problems,
        counts=dict(counts),
        labels=labels,
    )
