"""Errors raised by the ontology package.

Every error is an ``OntologyError``, itself a ``ValueError``: callers that validate user input
(the gRPC service, ingestion) can catch one type and turn it into an "invalid argument" reply,
while the specific subclasses carry what a user needs to fix the input (suggestions, candidates,
the replacement of an obsolete term).
"""

from __future__ import annotations

from collections.abc import Sequence


class OntologyError(ValueError):
    """Base of every ontology error."""


class MalformedTermError(OntologyError):
    """A term id that is not ``PREFIX:digits`` (for example ``CL0000236`` or ``CL:abc``)."""


class EmptyTermError(MalformedTermError):
    """An empty or blank string where a term id or name was expected."""


class UnknownPrefixError(OntologyError):
    """A well-formed id whose prefix names none of CL, UBERON, MONDO (or PATO for ``normal``)."""


class KindMismatchError(OntologyError):
    """A term of one kind given where another kind was asked (an UBERON id as a cell type)."""


class UnknownTermError(OntologyError):
    """An id, label or synonym the ontology does not hold; ``suggestions`` lists close term ids."""

    def __init__(self, message: str, suggestions: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.suggestions: list[str] = list(suggestions)


class AmbiguousTermError(OntologyError):
    """A name shared by several terms; ``candidates`` lists their ids so the caller can pick one."""

    def __init__(self, message: str, candidates: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.candidates: list[str] = list(candidates)


class ObsoleteTermError(OntologyError):
    """An obsolete term with no usable replacement in the same ontology.

    ``replaced_by`` holds the replacement the source names when it lies in another ontology
    (CL terms replaced by a CLO or GO term), else None; ``consider`` lists the source's
    suggested alternatives, if any.
    """

    def __init__(
        self, message: str, replaced_by: str | None = None, consider: Sequence[str] = ()
    ) -> None:
        super().__init__(message)
        self.replaced_by = replaced_by
        self.consider: list[str] = list(consider)


class ObsoleteTermWarning(UserWarning):
    """Warned when ``resolve`` follows an obsolete term's ``replaced_by`` to its replacement."""


class MappingFileError(OntologyError):
    """A user-supplied label mapping that is malformed or maps to a term that does not resolve."""
