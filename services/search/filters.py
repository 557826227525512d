"""Turn a user's filter (terms by id or name, studies, donors) into one store filter.

Ontology terms expand to their descendants through the ``*_ancestors`` payload lists: a
stored cell carries its term and every ancestor, so "T cell" is one ``any-of`` match on
``cell_type_ancestors`` and finds CD4 and CD8 T cells without listing them. The store then
applies the whole conjunction inside its index, never by post-filtering.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import ontology
from services.search.errors import FilterTermError, InvalidQueryError
from vectorstore import SearchFilter

Resolver = Callable[[str, str], str]

#: (spec attribute, ontology kind, field of the exact term, field of the ancestor list)
_TERM_FIELDS: tuple[tuple[str, str, str, str], ...] = (
    ("cell_types", "cell_type", "cell_type_id", "cell_type_ancestors"),
    ("tissues", "tissue", "tissue_id", "tissue_ancestors"),
    ("diseases", "disease", "disease_id", "disease_ancestors"),
)


@dataclass(frozen=True)
class FilterSpec:
    """What a user may restrict a search to. Empty fields leave that dimension open.

    Terms are ontology ids or names/synonyms ("T cell", "lung", "COVID-19"); with
    ``include_descendants`` (the default) a term also matches all its subtypes and parts.
    ``exclude_query_studies`` drops cells from the studies the query cells came from (find
    the same cell state elsewhere, not the query's own batch).
    """

    cell_types: Sequence[str] = ()
    tissues: Sequence[str] = ()
    diseases: Sequence[str] = ()
    exclude_cell_types: Sequence[str] = ()
    exclude_tissues: Sequence[str] = ()
    exclude_diseases: Sequence[str] = ()
    studies: Sequence[str] = ()
    exclude_studies: Sequence[str] = ()
    datasets: Sequence[str] = ()
    donors: Sequence[str] = ()
    assays: Sequence[str] = ()
    model_version: str | None = None
    include_descendants: bool = True
    exclude_query_studies: bool = False

    def __post_init__(self) -> None:
        for name in (
            "cell_types",
            "tissues",
            "diseases",
            "exclude_cell_types",
            "exclude_tissues",
            "exclude_diseases",
            "studies",
            "exclude_studies",
            "datasets",
            "donors",
            "assays",
        ):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, (value,))  # one value, not its letters
            else:
                object.__setattr__(self, name, tuple(value))

    def to_search_filter(
        self, *, query_studies: Iterable[str] = (), resolve: Resolver | None = None
    ) -> SearchFilter | None:
        """Shorthand for :func:`build_filter` on this spec."""
        return build_filter(self, query_studies=query_studies, resolve=resolve)


def resolve_terms(
    texts: Iterable[str], kind: str, field: str, resolve: Resolver | None = None
) -> list[str]:
    """Ontology ids for ids/names of one kind; unresolvable text raises ``FilterTermError``."""
    resolver = resolve or ontology.resolve
    ids: list[str] = []
    for text in texts:
        try:
            ids.append(resolver(text, kind))
        except ontology.OntologyError as exc:
            hints = list(getattr(exc, "suggestions", []) or getattr(exc, "candidates", []))
            raise FilterTermError(field, text, str(exc), hints) from exc
    return list(dict.fromkeys(ids))


def build_filter(
    spec: FilterSpec | None,
    *,
    query_studies: Iterable[str] = (),
    resolve: Resolver | None = None,
) -> SearchFilter | None:
    """One :class:`SearchFilter` for ``spec`` (None when it constrains nothing).

    ``query_studies`` are the studies of the query cells; they are needed, and only used,
    when ``spec.exclude_query_studies`` is set.
    """
    if spec is None:
        return None
    must: dict[str, list[str]] = {}
    must_not: dict[str, list[str]] = {}
    for attr, kind, id_field, anc_field in _TERM_FIELDS:
        field = anc_field if spec.include_descendants else id_field
        include = getattr(spec, attr)
        exclude = getattr(spec, f"exclude_{attr}")
        if include:
            must[field] = resolve_terms(include, kind, attr, resolve)
        if exclude:
            # An excluded term always takes its descendants with it: "not T cells" must not
            # leave CD4 T cells in.
            must_not[anc_field] = resolve_terms(exclude, kind, f"exclude_{attr}", resolve)
    excluded_studies = list(spec.exclude_studies)
    if spec.exclude_query_studies:
        studies = sorted(set(query_studies))
        if not studies:
            msg = (
                "exclude_query_studies needs the query cells' studies: query by stored cell ids, "
                "or pass query_studies= with a vector query"
            )
            raise InvalidQueryError(msg)
        excluded_studies.extend(studies)
    if spec.studies:
        kept = [s for s in dict.fromkeys(spec.studies) if s not in set(excluded_studies)]
        if not kept:
            msg = (
                f"the filter includes only studies {list(spec.studies)} and excludes all of "
                "them (exclude_studies or the query's own studies); nothing could match"
            )
            raise InvalidQueryError(msg)
        must["study_id"] = kept
    elif excluded_studies:
        must_not["study_id"] = list(dict.fromkeys(excluded_studies))
    for attr, field in (("datasets", "dataset_id"), ("donors", "donor_id"), ("assays", "assay")):
        if getattr(spec, attr):
            must[field] = list(getattr(spec, attr))
    if spec.model_version:
        must["model_version"] = [spec.model_version]
    flt = SearchFilter(must=must, must_not=must_not)
    return None if flt.is_empty else flt


def labels_filter(
    safelist: Sequence[str] = (),
    blocklist: Sequence[str] = (),
    *,
    resolve: Resolver | None = None,
) -> SearchFilter | None:
    """Restrict a reference to labels (exact cell types, by id or name): the annotation
    safelist and blocklist, applied inside the index so all k neighbours are admissible."""
    must = {"cell_type_id": resolve_terms(safelist, "cell_type", "safelist", resolve)}
    must_not = {"cell_type_id": resolve_terms(blocklist, "cell_type", "blocklist", resolve)}
    if must["cell_type_id"] and set(must["cell_type_id"]) <= set(must_not["cell_type_id"]):
        msg = "every safelisted label is also blocklisted; no reference cell could vote"
        raise InvalidQueryError(msg)
    flt = SearchFilter(
        must={k: v for k, v in must.items() if v},
        must_not={k: v for k, v in must_not.items() if v},
    )
    return None if flt.is_empty else flt
