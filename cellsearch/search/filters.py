"""Turn a user's filter (terms by id or name, studies, donors) into one store filter.

A term matches its descendants. Two equivalent filter shapes do that: an ``any-of`` on the
single-valued ``*_id`` field over the term and its descendants, or one match on the
``*_ancestors`` list every stored cell carries. The first is much faster when a filter has
several conditions (Qdrant checks the second condition on each candidate, and checking a
one-value field costs far less than a 30-value ancestor list: lung + ILD at 100k cells went
from 90 ms to 9 ms), so it is used unless a term has more than ``MAX_EXPANDED_TERMS``
descendants (e.g. "cell"), where the ancestor list is the compact form. The store applies
the whole conjunction inside its index, never by post-filtering.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import cast

import ontology
from cellsearch.platform import schema
from cellsearch.search.errors import FilterTermError, InvalidQueryError
from ontology import OntologyKind
from vectorstore import SearchFilter

Resolver = Callable[[str, str], str]
Expander = Callable[[str], Iterable[str]]

#: Above this many descendants a term is matched through the ``*_ancestors`` list instead.
MAX_EXPANDED_TERMS = 1000

#: Term fields of the schema: (include key, exclude key, ontology kind, term field, ancestors)
_TERM_FIELDS: tuple[tuple[str, str, str, str, str], ...] = tuple(
    (f.include, f.exclude, f.kind, f.name, f.ancestors)
    for f in schema.FIELDS
    if f.kind and f.include and f.exclude and f.ancestors
)
#: Plain (non-term) fields of the schema a filter keeps: (include key, payload field).
_PLAIN_INCLUDES: tuple[tuple[str, str], ...] = tuple(
    (f.include, f.name) for f in schema.FIELDS if f.include and not f.kind and f.name != "study_id"
)


@dataclass(frozen=True)
class FilterSpec:
    """What a user may restrict a search to. Empty fields leave that dimension open.

    The field names are the proto ``Filter``'s (``FilterSpec(**{"tissues": ["lung"]})``).
    Terms are ontology ids or names/synonyms ("T cell", "lung", "COVID-19"); a term also
    matches all its subtypes and parts unless ``exact_terms`` is set.
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
    exact_terms: bool = False
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


def _term_condition(
    ids: list[str], id_field: str, anc_field: str, expand: Expander | None
) -> tuple[str, list[str]]:
    """The cheapest exact condition matching ``ids`` and all their descendants."""
    expander = expand or ontology.descendants
    expanded: dict[str, None] = {}
    try:
        for term in ids:
            expanded.update(dict.fromkeys(expander(term)))
            expanded[term] = None
            if len(expanded) > MAX_EXPANDED_TERMS:
                return anc_field, ids
    except ontology.OntologyError:
        return anc_field, ids  # a term outside the bundled ontology: the lists still match
    return id_field, sorted(expanded)


def resolve_terms(
    texts: Iterable[str], kind: str, field: str, resolve: Resolver | None = None
) -> list[str]:
    """Ontology ids for ids/names of one kind; unresolvable text raises ``FilterTermError``."""
    resolver = resolve or ontology.resolve
    ids: list[str] = []
    for text in texts:
        try:
            ids.append(resolver(text, cast("OntologyKind", kind)))
        except ontology.OntologyError as exc:
            hints: list[str] = []
            if isinstance(exc, ontology.UnknownTermError):
                hints = exc.suggestions
            elif isinstance(exc, ontology.AmbiguousTermError):
                hints = exc.candidates
            raise FilterTermError(field, text, str(exc), hints) from exc
    return list(dict.fromkeys(ids))


def build_filter(
    spec: FilterSpec | None,
    *,
    query_studies: Iterable[str] = (),
    resolve: Resolver | None = None,
    expand: Expander | None = None,
) -> SearchFilter | None:
    """One :class:`SearchFilter` for ``spec`` (None when it constrains nothing).

    ``query_studies`` are the studies of the query cells; they are needed, and only used,
    when ``spec.exclude_query_studies`` is set. ``resolve`` and ``expand`` (a term's
    descendants) default to the bundled ontologies.
    """
    if spec is None:
        return None
    must: dict[str, list[str]] = {}
    must_not: dict[str, list[str]] = {}
    for attr, exclude_attr, kind, id_field, anc_field in _TERM_FIELDS:
        include = getattr(spec, attr)
        exclude = getattr(spec, exclude_attr)
        if include:
            ids = resolve_terms(include, kind, attr, resolve)
            if not spec.exact_terms:
                field, values = _term_condition(ids, id_field, anc_field, expand)
                must[field] = values
            else:
                must[id_field] = ids
        if exclude:
            # An excluded term always takes its descendants with it: "not T cells" must not
            # leave CD4 T cells in.
            must_not[anc_field] = resolve_terms(exclude, kind, exclude_attr, resolve)
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
    for attr, field in _PLAIN_INCLUDES:
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
