"""The only module that parses ontology files, and the closure cache that keeps parsing out of
every request path.

Sources: the zstd JSON files shipped by ``cellxgene-ontology-guide`` (term -> label, synonyms,
ancestors with distances, deprecated, replaced_by; the ancestors are already the transitive
is_a + part_of closure), and, for user-supplied files, OBO/OWL through pronto.

Parsing MONDO takes about a second; the compiled form (integer ids in CSR arrays plus one JSON
blob of names) is written once per source version as an ``.npz`` and loads in milliseconds.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import tempfile
import zipfile
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ontology._ids import NORMAL_ID, PREFIX_KIND, SOURCE_PREFIX, OntologyKind, split_id
from ontology._names import build_tiers, join_strings, split_strings

#: Bump when the layout of the compiled arrays changes: old cache files are then ignored.
CACHE_FORMAT = 3
DEFAULT_CACHE_DIR = Path("~/.cache/cellsearch/ontology")

Arrays = dict[str, np.ndarray]
#: A decoded JSON object: values are whatever the JSON held (str, number, list, dict ...).
JsonObject = dict[str, Any]


@dataclass
class RawTerm:
    """One term as read from a source file, before compilation."""

    label: str
    synonyms: list[str] = field(default_factory=list)
    deprecated: bool = False
    replaced_by: str | None = None
    consider: list[str] = field(default_factory=list)
    ancestors: dict[str, int] = field(default_factory=dict)  # id -> distance, self excluded


@dataclass
class RawOntology:
    """A parsed ontology of one kind: what ``compile_arrays`` turns into the cache."""

    kind: OntologyKind
    name: str
    version: str
    terms: dict[str, RawTerm]


# --------------------------------------------------------------------------- locating sources


def bundled_data_dir() -> Path:
    """The data folder of the installed ``cellxgene_ontology_guide`` (not imported)."""
    spec = importlib.util.find_spec("cellxgene_ontology_guide")
    if spec is None or not spec.submodule_search_locations:
        msg = "cellxgene-ontology-guide is not installed: pip install cellxgene-ontology-guide"
        raise FileNotFoundError(msg)
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _natural_key(text: str) -> list[int | str]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def newest_source(prefix: str, data_dir: Path | None = None) -> Path:
    """The newest ``{prefix}-ontology-*.json.zst`` in the bundled data folder."""
    folder = data_dir or bundled_data_dir()
    files = sorted(folder.glob(f"{prefix}-ontology-*.json.zst"), key=lambda p: _natural_key(p.name))
    if not files:
        msg = f"no {prefix} ontology file (*.json.zst) in {folder}"
        raise FileNotFoundError(msg)
    return files[-1]


def bundled_sources(kind: OntologyKind, data_dir: Path | None = None) -> list[Path]:
    """The files behind one kind: CL, UBERON, or MONDO plus PATO (for the term ``normal``)."""
    sources = [newest_source(SOURCE_PREFIX[kind], data_dir)]
    if kind == "disease":
        sources.append(newest_source("PATO", data_dir))
    return sources


def _version_of(path: Path) -> str:
    name = path.name.removesuffix(".json.zst").removesuffix(".json")
    return name.split("-ontology-", 1)[-1]


# --------------------------------------------------------------------------- parsing


def _normalise_ref(ref: str) -> str:
    """``obo.MONDO_0800497`` or a PURL -> ``MONDO:0800497``; anything else is kept as given."""
    tail = ref.rsplit("/", 1)[-1].removeprefix("obo.")
    parts = split_id(tail)
    return f"{parts[0]}:{parts[1]}" if parts else ref


def _read_json(path: Path) -> dict[str, JsonObject]:
    if path.name.endswith(".zst"):
        import zstandard

        with path.open("rb") as fh:
            payload: bytes | str = zstandard.ZstdDecompressor().stream_reader(fh).read()
    else:
        payload = path.read_text(encoding="utf-8")
    data: dict[str, JsonObject] = json.loads(payload)
    return data


def _keep(term_id: str, kind: OntologyKind) -> bool:
    parts = split_id(term_id)
    return parts is not None and PREFIX_KIND.get(parts[0]) == kind and parts[0] != "PATO"


def _raw_term(entry: JsonObject) -> RawTerm:
    replaced = entry.get("replaced_by")
    return RawTerm(
        label=str(entry.get("label") or ""),
        synonyms=[str(s) for s in entry.get("synonyms") or ()],
        deprecated=bool(entry.get("deprecated", False)),
        replaced_by=_normalise_ref(replaced) if replaced else None,
        consider=[_normalise_ref(c) for c in entry.get("consider") or ()],
        ancestors={str(a): int(d) for a, d in (entry.get("ancestors") or {}).items()},
    )


def parse_json(path: Path, kind: OntologyKind) -> RawOntology:
    """Parse a cellxgene-ontology-guide JSON file (``.json`` or ``.json.zst``) of one kind."""
    data = _read_json(path)
    terms = {tid: _raw_term(entry) for tid, entry in data.items() if _keep(tid, kind)}
    if not terms:
        msg = f"{path} holds no {kind} terms (expected ids prefixed {SOURCE_PREFIX[kind]}:)"
        raise ValueError(msg)
    name = SOURCE_PREFIX[kind]
    return RawOntology(kind=kind, name=name, version=_version_of(path), terms=terms)


def add_normal(raw: RawOntology, pato_path: Path) -> None:
    """Add PATO:0000461 "normal" to a disease ontology, as a root: its ancestors are itself only."""
    entry = _read_json(pato_path).get(NORMAL_ID)
    if entry is None:
        msg = f"{pato_path} has no {NORMAL_ID} (normal)"
        raise ValueError(msg)
    term = _raw_term(entry)
    term.ancestors = {}
    raw.terms[NORMAL_ID] = term
    raw.version = f"{raw.version}+PATO-{_version_of(pato_path)}"


def parse_pronto(path: Path, kind: OntologyKind) -> RawOntology:
    """Parse an OBO/OWL file with pronto; the closure follows is_a and part_of, as the JSON does."""
    from pronto.ontology import Ontology

    onto = Ontology(str(path))
    parents: dict[str, list[str]] = {}
    terms: dict[str, RawTerm] = {}
    for term in onto.terms():
        tid = _normalise_ref(term.id)
        ups = [_normalise_ref(p.id) for p in term.superclasses(distance=1, with_self=False)]
        for rel, targets in term.relationships.items():
            if rel.id in ("part_of", "BFO:0000050"):
                ups.extend(_normalise_ref(t.id) for t in targets)
        parents[tid] = ups
        terms[tid] = RawTerm(
            label=term.name or "",
            synonyms=sorted({s.description for s in term.synonyms}),
            deprecated=bool(term.obsolete),
            replaced_by=next((_normalise_ref(t.id) for t in term.replaced_by), None),
            consider=sorted(_normalise_ref(t.id) for t in term.consider),
        )
    for tid, raw in terms.items():
        raw.ancestors = _bfs_closure(tid, parents)
    kept = {tid: raw for tid, raw in terms.items() if _keep(tid, kind)}
    for raw in kept.values():
        raw.ancestors = {a: d for a, d in raw.ancestors.items() if a in kept}
    if not kept:
        msg = f"{path} holds no {kind} terms (expected ids prefixed {SOURCE_PREFIX[kind]}:)"
        raise ValueError(msg)
    version = str(onto.metadata.data_version or path.stem)
    return RawOntology(kind=kind, name=SOURCE_PREFIX[kind], version=version, terms=kept)


def _bfs_closure(start: str, parents: dict[str, list[str]]) -> dict[str, int]:
    """Ancestors of ``start`` with their shortest distance, self excluded (cycles are tolerated)."""
    dist: dict[str, int] = {}
    queue = deque([(start, 0)])
    seen = {start}
    while queue:
        node, d = queue.popleft()
        for parent in parents.get(node, ()):
            if parent not in seen:
                seen.add(parent)
                dist[parent] = d + 1
                queue.append((parent, d + 1))
    return dist


def parse_file(path: Path, kind: OntologyKind) -> RawOntology:
    """Parse any supported file: cellxgene JSON (``.json``, ``.json.zst``) or OBO/OWL (pronto)."""
    if path.name.endswith((".json", ".json.zst")):
        return parse_json(path, kind)
    return parse_pronto(path, kind)


# --------------------------------------------------------------------------- compiling


def compile_arrays(raw: RawOntology) -> Arrays:
    """Turn a parsed ontology into integer CSR arrays of the closure plus a JSON blob of names.

    ``anc_*`` rows list each term's ancestors (self excluded) ordered by distance; ``desc_*``
    rows are the transpose. Term ``i`` is ``ids[i]``; ids are sorted so the layout is stable.
    """
    ids = sorted(raw.terms)
    index = {tid: i for i, tid in enumerate(ids)}
    n = len(ids)
    rows_l: list[int] = []
    anc_l: list[int] = []
    dist_l: list[int] = []
    for i, tid in enumerate(ids):
        ups = raw.terms[tid].ancestors
        rows_l.extend([i] * len(ups))
        anc_l.extend([index.get(a, -1) for a in ups])
        dist_l.extend(ups.values())
    rows = np.asarray(rows_l, dtype=np.int64)
    anc = np.asarray(anc_l, dtype=np.int64)
    dist = np.asarray(dist_l, dtype=np.int64)
    valid = (anc >= 0) & (anc != rows)  # ancestors outside this kind, or self, are dropped
    rows, anc, dist = rows[valid], anc[valid], dist[valid]
    order = np.lexsort((anc, dist, rows))  # by term, then nearest first, then index
    rows, anc, dist = rows[order], anc[order].astype(np.int32), dist[order].astype(np.int16)
    anc_ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=anc_ptr[1:])
    by_ancestor = np.lexsort((rows, anc))
    desc_ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(anc, minlength=n), out=desc_ptr[1:])

    terms = [raw.terms[tid] for tid in ids]
    synonyms = {i: t.synonyms for i, t in enumerate(terms) if t.synonyms}
    deprecated = [t.deprecated for t in terms]
    labels = [t.label.replace("\x1f", " ") for t in terms]
    meta = {
        "format": CACHE_FORMAT,
        "kind": raw.kind,
        "name": raw.name,
        "version": raw.version,
        "replaced_by": {str(i): t.replaced_by for i, t in enumerate(terms) if t.replaced_by},
        "consider": {str(i): t.consider for i, t in enumerate(terms) if t.consider},
    }
    return {
        "ids": np.asarray(ids, dtype=np.str_),
        "deprecated": np.asarray(deprecated, dtype=bool),
        "anc_ptr": anc_ptr,
        "anc_idx": anc,
        "anc_dist": dist,
        "desc_ptr": desc_ptr,
        "desc_idx": rows[by_ancestor].astype(np.int32),
        "meta": _json_bytes(meta),
        "labels": join_strings(labels),
        "synonyms": _json_bytes({str(i): names for i, names in synonyms.items()}),
        **build_tiers(labels, synonyms, deprecated),
    }


def _json_bytes(obj: object) -> np.ndarray:
    return np.frombuffer(json.dumps(obj, separators=(",", ":")).encode("utf-8"), dtype=np.uint8)


def read_json_blob(arrays: Arrays, key: str) -> JsonObject:
    """Decode one of the JSON blobs stored beside the arrays (``meta`` or ``synonyms``)."""
    blob: JsonObject = json.loads(arrays[key].tobytes().decode("utf-8"))
    return blob


def read_meta(arrays: Arrays) -> JsonObject:
    """Decode the small metadata blob: kind, name, version, replacements."""
    return read_json_blob(arrays, "meta")


# --------------------------------------------------------------------------- the cache


def _cache_key(kind: OntologyKind, sources: Iterable[Path]) -> str:
    """A file name naming the sources' versions, plus a hash of their names and sizes."""
    sources = list(sources)
    digest = hashlib.sha1(usedforsecurity=False)
    for src in sources:
        digest.update(f"{src.name}:{src.stat().st_size};".encode())
    stem = "+".join(src.name.split(".", 1)[0] for src in sources)
    return f"{kind}.{stem}.{digest.hexdigest()[:10]}.v{CACHE_FORMAT}.npz"


def _write_atomically(path: Path, arrays: Arrays) -> None:
    """Write to a temp file then rename, so concurrent processes never read half a cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, allow_pickle=True, **arrays)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_cache(path: Path) -> Arrays | None:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
        if read_meta(arrays).get("format") != CACHE_FORMAT:
            return None
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    return arrays


def load_arrays(
    kind: OntologyKind,
    *,
    cache_dir: Path | None = None,
    source: Path | None = None,
) -> tuple[Arrays, Path]:
    """Compiled arrays for ``kind``: from the cache when present, else parsed and cached.

    ``source`` is a user-supplied file (JSON or OBO/OWL); None means the newest bundled files.
    Returns the arrays and the cache file path.
    """
    folder = (cache_dir or DEFAULT_CACHE_DIR).expanduser()
    sources = [source] if source is not None else bundled_sources(kind)
    path = folder / _cache_key(kind, sources)
    arrays = _read_cache(path) if path.exists() else None
    if arrays is None:
        arrays = compile_arrays(build_raw(kind, source))
        _write_atomically(path, arrays)
    return arrays, path


def build_raw(kind: OntologyKind, source: Path | None = None) -> RawOntology:
    """Parse the source files of ``kind`` (bundled ones when ``source`` is None)."""
    if source is not None:
        return parse_file(source, kind)
    main, *extra = bundled_sources(kind)
    raw = parse_json(main, kind)
    if kind == "disease":
        add_normal(raw, extra[0])
    return raw


def read_labels(arrays: Arrays) -> list[str]:
    """Labels, in term order."""
    return split_strings(arrays["labels"])


def cellxgene_cell_classes(data_dir: Path | None = None) -> tuple[str, ...]:
    """CELLxGENE's high-level cell types (``cell_class_list.json`` of cellxgene-ontology-guide).

    The 23 broad classes CELLxGENE's explorer groups cells by (hematopoietic cell, epithelial
    cell, neural cell, ...): the floor below which an annotation's ancestor fallback stays
    informative. Read from the installed package's data, never downloaded.
    """
    import json

    path = (data_dir or bundled_data_dir()) / "cell_class_list.json"
    return tuple(str(t) for t in json.loads(path.read_text()))
