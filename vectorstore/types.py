"""Our own small types for the store: what goes in, how it is filtered, what comes out.

Callers (workers, the search service) speak only these; the backends translate them
to Qdrant's objects. Keeping them plain dataclasses means no caller ever depends on a
Qdrant package, and the two backends can be swapped behind one interface.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

DIM = 128

#: Namespace of point ids: uuid5(namespace, "dataset_id/cell_id"). Fixed forever: changing it
#: would make re-ingesting a dataset duplicate every cell instead of overwriting it.
POINT_NAMESPACE = uuid.UUID("6f1c0f3e-5b7a-5d2e-9c3b-2a4f1e0c7d11")

#: Every payload key a stored cell carries (the lists hold a term and all its ancestors).
SCALAR_FIELDS: tuple[str, ...] = (
    "cell_id",
    "dataset_id",
    "study_id",
    "donor_id",
    "sample_id",
    "cell_type_id",
    "tissue_id",
    "disease_id",
    "assay",
    "model_version",
)
LIST_FIELDS: tuple[str, ...] = ("cell_type_ancestors", "tissue_ancestors", "disease_ancestors")
PAYLOAD_FIELDS: tuple[str, ...] = SCALAR_FIELDS + LIST_FIELDS

Payload = dict[str, "str | list[str]"]


def point_id(dataset_id: str, cell_id: str) -> str:
    """The deterministic point id of a cell: re-upserting a dataset overwrites, never duplicates."""
    if not dataset_id or not cell_id:
        msg = f"point_id needs a non-empty dataset_id and cell_id, got {dataset_id!r}, {cell_id!r}"
        raise ValueError(msg)
    return str(uuid.uuid5(POINT_NAMESPACE, f"{dataset_id}/{cell_id}"))


def _check_field(name: str, where: str) -> None:
    if name not in PAYLOAD_FIELDS:
        msg = f"{where}: unknown payload field {name!r}; fields are {list(PAYLOAD_FIELDS)}"
        raise ValueError(msg)


@dataclass(frozen=True)
class CellRecord:
    """One embedded cell ready to store: its vector and the payload filters match on."""

    dataset_id: str
    cell_id: str
    vector: np.ndarray
    payload: dict[str, str | list[str]]
    _point_id: str = field(init=False, repr=False, compare=False, default="")

    def __post_init__(self) -> None:
        vec = np.asarray(self.vector, dtype=np.float32).reshape(-1)
        if vec.shape != (DIM,):
            msg = f"cell {self.cell_id!r}: vector has {vec.size} values, the store holds {DIM}-d"
            raise ValueError(msg)
        if not np.all(np.isfinite(vec)) or not np.any(vec):
            msg = f"cell {self.cell_id!r}: vector is zero or not finite; cosine needs a direction"
            raise ValueError(msg)
        for key in ("dataset_id", "cell_id"):
            if key in self.payload and self.payload[key] != getattr(self, key):
                msg = (
                    f"cell {self.cell_id!r}: payload {key}={self.payload[key]!r} disagrees "
                    f"with the record's {key}={getattr(self, key)!r}"
                )
                raise ValueError(msg)
        object.__setattr__(self, "vector", vec)
        object.__setattr__(self, "_point_id", point_id(self.dataset_id, self.cell_id))

    @property
    def point_id(self) -> str:
        return self._point_id

    def full_payload(self) -> Payload:
        """The payload with dataset_id and cell_id always set (filters and retrieval need them)."""
        return {**self.payload, "dataset_id": self.dataset_id, "cell_id": self.cell_id}


@dataclass(frozen=True)
class SearchFilter:
    """A conjunction over payload fields: each ``must`` field matches any of its values, and no
    ``must_not`` field may match any of its values. List fields match when any element does,
    so ``must={"cell_type_ancestors": ["CL:0000084"]}`` selects every T cell subtype."""

    must: Mapping[str, Sequence[str]] = field(default_factory=dict)
    must_not: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        clean: dict[str, dict[str, tuple[str, ...]]] = {}
        for part in ("must", "must_not"):
            out: dict[str, tuple[str, ...]] = {}
            for name, values in getattr(self, part).items():
                _check_field(name, f"SearchFilter.{part}")
                if isinstance(values, str):
                    values = (values,)  # one value, not letters
                vals = tuple(dict.fromkeys(str(v) for v in values))
                if not vals and part == "must":
                    msg = (
                        f"SearchFilter.must[{name!r}] is empty, which would match no cell; "
                        "drop the field to leave it unconstrained"
                    )
                    raise ValueError(msg)
                if vals:
                    out[name] = vals
            clean[part] = out
        object.__setattr__(self, "must", clean["must"])
        object.__setattr__(self, "must_not", clean["must_not"])

    @property
    def is_empty(self) -> bool:
        return not self.must and not self.must_not

    def matches(self, payload: Mapping[str, object]) -> bool:
        """Evaluate the filter on one payload in Python: the reference semantics for tests."""

        def values_of(name: str) -> set[str]:
            raw = payload.get(name)
            if raw is None:
                return set()
            return {str(v) for v in raw} if isinstance(raw, list | tuple) else {str(raw)}

        if any(not values_of(n) & set(vs) for n, vs in self.must.items()):
            return False
        return not any(values_of(n) & set(vs) for n, vs in self.must_not.items())

    def and_(self, other: SearchFilter | None) -> SearchFilter:
        """Both filters at once (must values on a shared field are intersected)."""
        if other is None:
            return self
        must = {k: list(v) for k, v in self.must.items()}
        for name, vals in other.must.items():
            must[name] = [v for v in must[name] if v in set(vals)] if name in must else list(vals)
            if not must[name]:
                msg = f"combined filter asks {name!r} to be two disjoint sets of values"
                raise ValueError(msg)
        must_not = {k: list(v) for k, v in self.must_not.items()}
        for name, vals in other.must_not.items():
            must_not[name] = [*must_not.get(name, []), *vals]
        return SearchFilter(must=must, must_not=must_not)


@dataclass(frozen=True)
class Hit:
    """One result: which cell, how close (cosine similarity and distance = 1 - similarity)."""

    cell_id: str
    dataset_id: str
    score: float
    distance: float
    payload: dict[str, str | list[str]]
    vector: np.ndarray | None = None
