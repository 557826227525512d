"""Ingestion reads only files under the allowed roots, whatever the path's spelling."""

from __future__ import annotations

from pathlib import Path

import pytest

from cellsearch.platform.errors import PathNotAllowedError
from cellsearch.platform.paths import check_path


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "inbox"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.h5ad").write_bytes(b"x")
    outside = tmp_path / "secret.h5ad"
    outside.write_bytes(b"x")
    return root, outside


def test_file_under_a_root_resolves(layout) -> None:
    root, _ = layout
    assert check_path(root / "sub" / "a.h5ad", [root]) == (root / "sub" / "a.h5ad").resolve()


def test_file_outside_the_roots_is_refused_with_the_roots_named(layout) -> None:
    root, outside = layout
    with pytest.raises(PathNotAllowedError, match="outside the allowed roots") as info:
        check_path(outside, [root])
    assert str(root.resolve()) in str(info.value)
    assert info.value.code == "path_not_allowed"


def test_dot_dot_is_refused_even_when_it_lands_inside(layout) -> None:
    root, _ = layout
    with pytest.raises(PathNotAllowedError, match=r"contains '\.\.'"):
        check_path(f"{root}/sub/../sub/a.h5ad", [root])


def test_relative_path_is_refused(layout) -> None:
    root, _ = layout
    with pytest.raises(PathNotAllowedError, match="is relative"):
        check_path("sub/a.h5ad", [root])


def test_symlink_escaping_the_root_is_refused(layout) -> None:
    root, outside = layout
    link = root / "innocent.h5ad"
    link.symlink_to(outside)
    with pytest.raises(PathNotAllowedError, match="resolves to"):
        check_path(link, [root])


def test_symlink_within_the_root_is_followed(layout) -> None:
    root, _ = layout
    link = root / "alias.h5ad"
    link.symlink_to(root / "sub" / "a.h5ad")
    assert check_path(link, [root]) == (root / "sub" / "a.h5ad").resolve()


def test_missing_file_and_no_roots_are_refused(layout) -> None:
    root, outside = layout
    with pytest.raises(PathNotAllowedError, match="does not exist"):
        check_path(root / "nope.h5ad", [root])
    with pytest.raises(PathNotAllowedError, match="no allowed roots"):
        check_path(outside, [])
    with pytest.raises(PathNotAllowedError, match="empty path"):
        check_path("  ", [root])
