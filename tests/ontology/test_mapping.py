"""Label mapping: the user's mapping first, then ids/labels/synonyms, and a report of the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

import ontology
from ontology import MappingFileError, read_mapping_file
from ontology.mappings import PBMC68K_BULK_LABELS

T, B = "CL:0000002", "CL:0000003"


def test_exact_labels_synonyms_and_ids_map_and_the_rest_is_reported(tiny):
    values = ["T cell", "b lymphocyte", "CL:0000004", "T cell", "mystery", "lymphocyte"]
    result = tiny.map_labels(values)
    assert result.mapping == {"T cell": T, "b lymphocyte": B, "CL:0000004": "CL:0000004"}
    assert result.how == {"T cell": "label", "b lymphocyte": "synonym", "CL:0000004": "id"}
    assert result.unmapped == ["mystery", "lymphocyte"]
    assert "several" in result.problems["lymphocyte"]
    assert result.counts["T cell"] == 2
    assert not result.complete
    report = result.report()
    assert "4 of 6 distinct" not in report  # counts distinct values, not entries
    assert "3 of 5 distinct values mapped (4 of 6 entries)" in report
    assert "'mystery'" in report


def test_a_user_mapping_beats_the_automatic_match(tiny):
    result = tiny.map_labels(["T cell", "Tregs"], mapping={"T cell": B, "tregs": "T cell"})
    assert result.mapping == {"T cell": B, "Tregs": T}
    assert result.how == {"T cell": "mapping", "Tregs": "mapping"}
    assert result.complete


def test_mapping_file_with_comments_header_and_label_check(tiny, tmp_path):
    path = tmp_path / "m.tsv"
    path.write_text("# a comment\nvalue\tterm_id\tlabel\nTh\tCL:0000004\tCD4 T cell\nBs\tB cell\n")
    assert [r.value for r in read_mapping_file(path)] == ["Th", "Bs"]
    result = tiny.map_labels(["Th", "Bs", "other"], mapping=path)
    assert result.mapping == {"Th": "CL:0000004", "Bs": B}
    assert result.unmapped == ["other"]


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("Th\tCL:0000004\tB cell\n", "label"),  # the label column disagrees with the id
        ("Th\tCL:0009999\n", "fails"),  # a target that does not resolve
        ("Th\tCL:0000004\nTh\tCL:0000003\n", "twice"),
        ("just one column\n", "expected"),
    ],
)
def test_bad_mapping_files_fail_with_the_line(tiny, tmp_path, body, match):
    path = tmp_path / "bad.tsv"
    path.write_text(body)
    with pytest.raises(MappingFileError, match=match):
        tiny.map_labels(["Th"], mapping=path)


def _pbmc68k_bulk_labels() -> list[str]:
    """``obs["bulk_labels"]`` of scanpy's bundled file, read with h5py (the old format keeps obs
    as one compound dataset with the categories in uns): importing scanpy takes seconds."""
    import importlib.util

    import h5py

    spec = importlib.util.find_spec("scanpy")  # located, not imported: importing takes seconds
    assert spec is not None
    assert spec.submodule_search_locations
    folder = Path(next(iter(spec.submodule_search_locations)))
    with h5py.File(folder / "datasets" / "10x_pbmc68k_reduced.h5ad", "r") as f:
        raw = f["uns/bulk_labels_categories"][:]
        codes = f["obs"]["bulk_labels"]
    categories = [c.decode() if isinstance(c, bytes) else str(c) for c in raw]
    return [categories[int(c)] for c in codes]


@pytest.mark.integration
def test_the_committed_pbmc68k_mapping_covers_every_bulk_label(real):
    values = _pbmc68k_bulk_labels()
    assert len(values) == 700
    result = ontology.map_labels(values, "cell_type", mapping=PBMC68K_BULK_LABELS)
    assert result.complete, result.report()
    assert len(result.mapping) == 10
    assert result.counts["Dendritic"] == 240  # the decoding matches anndata's value_counts
    assert result.mapping["CD19+ B"] == "CL:0000236"
    assert result.mapping["CD14+ Monocyte"] == "CL:0001054"
    for tid in result.mapping.values():  # every id is a live descendant of "cell"
        assert "CL:0000000" in ontology.ancestors(tid)
    assert ontology.is_related(result.mapping["CD8+ Cytotoxic T"], "CL:0000084")


def test_the_mapping_file_ships_inside_the_package():
    assert PBMC68K_BULK_LABELS.is_file()
    assert PBMC68K_BULK_LABELS.parent.parent.name == "ontology"
