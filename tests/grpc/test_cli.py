"""The ``cellsearch`` CLI against the real server (client commands) and its parser."""

from __future__ import annotations

import pytest

from cellsearch.app.cli import build_parser, main

pytestmark = pytest.mark.integration

TOKEN = "test-token-0123"


def _run(server_env, *argv: str) -> int:
    return main(["--address", server_env.address, "--token", TOKEN, *argv])


def test_parser_has_every_subcommand() -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(sub.choices) == {
        "serve", "worker", "train", "ingest", "search", "annotate", "resolve", "stats", "demo",
    }  # fmt: skip
    args = build_parser().parse_args(["ingest", "x.h5ad", "--study", "s", "--wait"])
    assert (args.file, args.study, args.wait) == ("x.h5ad", "s", True)


def test_resolve_and_stats(server_env, capsys) -> None:
    assert _run(server_env, "resolve", "ILD", "--kind", "disease") == 0
    assert capsys.readouterr().out.strip() == "MONDO:0015925\tinterstitial lung disease"
    assert _run(server_env, "stats", "--tissue", "lung", "--by", "study") == 0
    out = capsys.readouterr().out
    assert out.startswith("120 cells")
    assert "ild-lung" in out and "pbmc" not in out


def test_search_by_cells_with_a_filter(server_env, capsys, tmp_path) -> None:
    argv = ["search", "--cells", "pbmc-T_cell-0", "-k", "5", "--tissue", "lung", "--disease", "ILD"]
    assert _run(server_env, *argv) == 0
    out = capsys.readouterr().out
    assert out.count(" ild-lung-T_cell-") == 5  # five hits, all ILD lung T cells
    csv = tmp_path / "hits.csv"
    assert _run(server_env, *argv, "--centroid", "-o", str(csv)) == 0
    assert "query coherence" in capsys.readouterr().out
    assert len(csv.read_text().splitlines()) == 6


def test_ingest_submits_and_errors_exit_2(server_env, capsys) -> None:
    path = server_env.inbox / "cli.h5ad"
    path.write_bytes(b"x")
    assert _run(server_env, "ingest", str(path), "--study", "cli-study") == 0
    assert "cli-study/cli PENDING" in capsys.readouterr().out
    assert _run(server_env, "resolve", "no such tissue at all", "--kind", "tissue") == 2
    err = capsys.readouterr().err
    assert err.startswith("cellsearch resolve: INVALID_ARGUMENT")
    assert main(["--address", server_env.address, "stats"]) == 2
    assert "UNAUTHENTICATED" in capsys.readouterr().err
