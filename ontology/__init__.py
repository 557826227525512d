"""Cell Ontology, UBERON and MONDO: resolve names, walk ancestors and descendants.

The closure of each ontology is compiled once per source version into a small ``.npz`` cache
(``ontology._load``, the only module that parses ontology files), so every function here answers
from integer arrays and dicts. Module-level functions use one shared ``Ontology`` per kind.

"Ancestor" follows the source's merged is_a + part_of closure: a term's descendants are its
subtypes *and* its parts (see docs/ontology.md).
"""

from __future__ import annotations

from ontology import mappings
from ontology._ids import KINDS, NORMAL_ID, OntologyKind, kind_of
from ontology._load import DEFAULT_CACHE_DIR, cellxgene_cell_classes
from ontology._registry import (
    ancestors,
    clear_loaded,
    descendants,
    get_ontology,
    is_related,
    label,
    lowest_common_ancestor,
    map_labels,
    related_matrix,
    resolve,
)
from ontology.core import Ontology
from ontology.errors import (
    AmbiguousTermError,
    EmptyTermError,
    KindMismatchError,
    MalformedTermError,
    MappingFileError,
    ObsoleteTermError,
    ObsoleteTermWarning,
    OntologyError,
    UnknownPrefixError,
    UnknownTermError,
)
from ontology.mapping import LabelMapping, read_mapping_file

__all__ = [
    "DEFAULT_CACHE_DIR",
    "KINDS",
    "NORMAL_ID",
    "AmbiguousTermError",
    "EmptyTermError",
    "KindMismatchError",
    "LabelMapping",
    "MalformedTermError",
    "MappingFileError",
    "ObsoleteTermError",
    "ObsoleteTermWarning",
    "Ontology",
    "OntologyError",
    "OntologyKind",
    "UnknownPrefixError",
    "UnknownTermError",
    "ancestors",
    "cellxgene_cell_classes",
    "clear_loaded",
    "descendants",
    "get_ontology",
    "is_related",
    "kind_of",
    "label",
    "lowest_common_ancestor",
    "map_labels",
    "mappings",
    "read_mapping_file",
    "related_matrix",
    "resolve",
]
