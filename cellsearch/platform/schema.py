"""THE payload schema: every field a stored cell carries, where it comes from, and how users
reach it (filter keys, facets, readable labels). Every other list of payload fields, term
kinds, obs columns, facets or filter keys in the platform is derived from :data:`FIELDS`.

The store's own field list (``vectorstore.PAYLOAD_FIELDS``: what it indexes) and the input
contract's term columns (``celldata.validate.TERM_COLUMNS``) sit below this layer; a test
checks that this table covers them exactly.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PayloadField:
    """One payload field of a stored cell."""

    #: Key in the stored payload.
    name: str
    #: obs columns (CELLxGENE schema names) feeding it, in order of preference; () when the
    #: platform sets it (the dataset id, the model version).
    obs: tuple[str, ...] = ()
    #: Ontology kind when the value is a term id (``cell_type``, ``tissue``, ``disease``).
    kind: str | None = None
    #: ``Filter`` key that keeps only these values ("cells in lung"), if filterable.
    include: str | None = None
    #: ``Filter`` key that drops these values, if any.
    exclude: str | None = None
    #: Name of its ``Stats`` facet, if it has one.
    facet: str | None = None

    @property
    def ancestors(self) -> str | None:
        """The payload list holding the term and every ancestor (filters match on it)."""
        return f"{self.kind}_ancestors" if self.kind else None

    @property
    def label(self) -> str | None:
        """The column of readable term labels a hit or annotation adds beside the id."""
        return self.kind


FIELDS: tuple[PayloadField, ...] = (
    PayloadField("dataset_id", include="datasets", facet="dataset"),
    PayloadField(
        "study_id", ("study_id",), include="studies", exclude="exclude_studies", facet="study"
    ),
    PayloadField("donor_id", ("donor_id",), include="donors", facet="donor"),
    PayloadField("sample_id", ("sample_id",)),
    PayloadField(
        "cell_type_id",
        ("cell_type_ontology_term_id",),
        kind="cell_type",
        include="cell_types",
        exclude="exclude_cell_types",
        facet="cell_type",
    ),
    PayloadField(
        "tissue_id",
        ("tissue_ontology_term_id",),
        kind="tissue",
        include="tissues",
        exclude="exclude_tissues",
        facet="tissue",
    ),
    PayloadField(
        "disease_id",
        ("disease_ontology_term_id",),
        kind="disease",
        include="diseases",
        exclude="exclude_diseases",
        facet="disease",
    ),
    PayloadField("assay", ("assay_ontology_term_id", "assay"), include="assays", facet="assay"),
    PayloadField("model_version"),
)
"""Every scalar payload field but ``cell_id``, in the order hits show them."""

BY_NAME: dict[str, PayloadField] = {f.name: f for f in FIELDS}

#: Payload field -> the obs columns feeding it (ingestion reads these).
OBS_COLUMNS: dict[str, tuple[str, ...]] = {f.name: f.obs for f in FIELDS if f.obs}
#: Term fields -> their ancestor-list field.
TERM_FIELDS: dict[str, str] = {f.name: f.ancestors for f in FIELDS if f.ancestors}
#: Term fields -> their ontology kind.
TERM_KINDS: dict[str, str] = {f.name: f.kind for f in FIELDS if f.kind}
#: ``Stats`` facet name -> payload field.
FACETS: dict[str, str] = {f.facet: f.name for f in FIELDS if f.facet}
#: Readable label column -> the term field it labels.
LABEL_FIELDS: dict[str, str] = {f.label: f.name for f in FIELDS if f.label}
#: Payload fields a hit returns by default (the ancestor lists stay server-side).
HIT_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.name != "dataset_id")
#: Every payload key a stored cell carries.
PAYLOAD_FIELDS: tuple[str, ...] = (
    "cell_id",
    *(f.name for f in FIELDS),
    *(f.ancestors for f in FIELDS if f.ancestors),
)
#: Filter keys that take a list of values (the proto's repeated ``Filter`` fields).
FILTER_LISTS: tuple[str, ...] = tuple(
    key for f in FIELDS for key in (f.include, f.exclude) if key is not None
)
#: Filter keys that are switches.
FILTER_FLAGS: tuple[str, ...] = ("exact_terms", "exclude_query_studies")
