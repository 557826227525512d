"""deploy/README.md says what the code does: its sizing table, field list and YAML are checked."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest
import yaml
from deploy_checks import COMPOSE_FILE, ROOT, dependency_problems, load_script, schema_errors

GUIDE = ROOT / "deploy" / "README.md"


sizing = load_script("cellsearch_sizing", ROOT / "deploy" / "sizing.py")


def between(text: str, marker: str) -> str:
    match = re.search(rf"<!-- {marker}:start -->\n(.*?)\n<!-- {marker}:end -->", text, re.S)
    assert match, f"marker {marker} missing from the guide"
    return match.group(1)


def test_guide_shows_the_table_sizing_py_computes():
    text = GUIDE.read_text()
    assert between(text, "sizing-table") == sizing.render_table(sizing.RECORDED)
    assert between(text, "sizing-inputs") == sizing.render_inputs(sizing.RECORDED)


def test_every_sizing_input_names_its_source():
    """Measured inputs name a script that exists; the rest say they are estimates."""
    for name, figure in vars(sizing.RECORDED).items():
        assert figure.source.strip(), name
        assert figure.value > 0, name
        if name.endswith(("_bytes", "_per_gpu", "_per_node")):
            scripts = re.findall(r"(?:benchmarks|deploy)/\w+\.py", figure.source)
            if figure.source.startswith("ESTIMATE"):
                continue
            assert scripts, (name, figure.source)
            assert (ROOT / scripts[0]).is_file(), (name, scripts[0])


def test_per_cell_inputs_follow_from_the_benchmark_runs_in_the_guide():
    """RAM = slope of RSS between the int8 runs; disk = the largest int8 run; upsert x 8."""
    runs = {}
    for line in GUIDE.read_text().splitlines():
        cells = re.match(
            r"\| `--(?:size small|cells 100000 --skip-float)` \((int8|no quant\w*)\)", line
        )
        if cells:
            values = [float(v.replace(",", "")) for v in line.split("|")[2:7]]
            runs[(cells.group(1), int(values[0]))] = values
    small, large = runs[("int8", 20_000)], runs[("int8", 100_000)]
    slope = (large[3] * 100_000 - small[3] * 20_000) / 80_000
    assert round(slope) == sizing.RECORDED.ram_bytes.value
    assert large[4] == sizing.RECORDED.disk_bytes.value
    assert large[1] * 8 == sizing.RECORDED.upsert_cells_per_s_per_node.value


def test_size_follows_the_published_formulas():
    gib = 1024**3
    inputs = replace(
        sizing.RECORDED,
        ram_bytes=sizing.Figure(gib / 1e6, "B/cell", "test"),  # 1e6 cells = 1 GiB
        disk_bytes=sizing.Figure(4 * gib / 1e6, "B/cell", "test"),
        ingest_cells_per_s_per_gpu=sizing.Figure(1_000, "cells/s", "test"),
        upsert_cells_per_s_per_node=sizing.Figure(4_000, "cells/s", "test"),
        node_ram_gib=sizing.Figure(100, "GiB", "test"),
        node_disk_gib=sizing.Figure(1_000, "GiB", "test"),
        replication_factor=sizing.Figure(2, "copies", "test"),
        ram_headroom=sizing.Figure(1.5, "x", "test"),
        disk_headroom=sizing.Figure(2, "x", "test"),
        ingest_hours=sizing.Figure(10, "h", "test"),
    )
    row = sizing.size(100_000_000, inputs)
    assert row.ram_gib == pytest.approx(100 * 2 * 1.5)  # 300 GiB -> 3 nodes by RAM
    assert row.disk_gib == pytest.approx(400 * 2 * 2)  # 1600 GiB -> 2 nodes by disk
    assert row.ingest_hours_one_gpu == pytest.approx(100_000_000 / 1_000 / 3600)
    assert row.gpus == 3  # 27.8 h of work in a 10 h window
    # 3 GPUs x 1000 cells/s x 2 copies = 6000 upserts/s over 4000 per node -> 2 nodes; RAM wins
    assert row.qdrant_nodes == 3
    fast = replace(inputs, upsert_cells_per_s_per_node=sizing.Figure(500, "cells/s", "test"))
    assert sizing.size(100_000_000, fast).qdrant_nodes == 12  # ingestion-bound


def test_sizing_script_prints_overrides(capsys):
    assert sizing.main(["--ram-bytes", "1000"]) == 0
    out = capsys.readouterr().out
    assert "| `ram_bytes` | 1,000 B/cell | command line |" in out
    assert "| 10M | 23 GiB |" in out  # 1e7 x 1000 B x 2 copies x 1.25 / 2**30


def test_guide_indexes_exactly_the_fields_the_store_indexes():
    from vectorstore.config import INDEXED_FIELDS

    loop = re.search(r"for f in (.*?); do", GUIDE.read_text(), re.S).group(1)
    assert loop.replace("\\", " ").split() == list(INDEXED_FIELDS)


def test_guide_creates_the_cluster_collection_with_the_stores_graph():
    """The curl that creates a cluster's collection builds the graph the store would build
    (at 1M cells a smaller ef_construct cost recall on broad filters)."""
    from vectorstore import StoreConfig

    body = re.search(r"\"hnsw_config\": (\{.*?\})", GUIDE.read_text()).group(1)
    hnsw = json.loads(body)
    cfg = StoreConfig()
    assert (hnsw["m"], hnsw["ef_construct"], hnsw["full_scan_threshold"]) == (
        cfg.hnsw_m,
        cfg.hnsw_ef_construct,
        cfg.full_scan_threshold_kb,
    )


def test_guide_multi_gpu_snippet_is_valid_in_compose_yaml():
    """The one-service-per-GPU example, pasted under services:, is still valid Compose."""
    blocks = re.findall(r"```yaml\n(.*?)```", GUIDE.read_text(), re.S)
    snippet = next(b for b in blocks if "worker-gpu1:" in b)
    snippet = "\n".join(line for line in snippet.splitlines() if not line.strip().startswith("#"))
    text = COMPOSE_FILE.read_text()
    start = text.index("  worker:\n")
    end = text.index("  search:\n")
    doc = yaml.safe_load(text[:start] + snippet + "\n\n" + text[end:])
    assert schema_errors(doc) == []
    assert dependency_problems(doc) == []
    gpus = [
        doc["services"][name]["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"]
        for name in ("worker", "worker-gpu1")
    ]
    assert gpus == [["0"], ["1"]]
    assert doc["services"]["worker-gpu1"]["command"] == doc["services"]["worker"]["command"]


def test_guide_volume_examples_are_valid_compose():
    blocks = re.findall(r"```yaml\n(.*?)```", GUIDE.read_text(), re.S)
    volumes = next(b for b in blocks if b.startswith("volumes:"))
    doc = yaml.safe_load(volumes)
    assert schema_errors({"services": {}, **doc}) == []
    commented = [line[1:] for line in volumes.splitlines() if line.startswith("#  ")]
    nfs = yaml.safe_load("\n".join(commented))
    assert schema_errors({"services": {}, "volumes": nfs}) == []
    assert nfs["inbox"]["driver_opts"]["type"] == "nfs"
