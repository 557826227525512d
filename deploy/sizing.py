"""The sizing table of deploy/README.md, computed from per-cell benchmark figures.

Capacity planning is arithmetic on a handful of measured rates: bytes of RAM and disk per stored
cell (benchmarks/bench_vectorstore.py), cells per second that one GPU worker ingests end to end
(benchmarks/bench_ingest.py) and that one Qdrant node absorbs (bench_vectorstore.py). Keeping the
arithmetic here, with each input's source beside it, lets the guide's table be regenerated when a
benchmark changes and lets a test check that the table printed in the guide is this one.

    python deploy/sizing.py                      # the table with the recorded inputs
    python deploy/sizing.py --ram-bytes 300 ...  # the same table with your own measurements
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

GIB = 1024**3
SCALES: tuple[int, ...] = (10_000_000, 100_000_000, 1_000_000_000)


@dataclass(frozen=True)
class Figure:
    """One input: its value, its unit and where it comes from (a benchmark, or an estimate)."""

    value: float
    unit: str
    source: str


@dataclass(frozen=True)
class Inputs:
    """Per-cell and per-machine figures the table is derived from."""

    ram_bytes: Figure
    disk_bytes: Figure
    ingest_cells_per_s_per_gpu: Figure
    upsert_cells_per_s_per_node: Figure
    node_ram_gib: Figure
    node_disk_gib: Figure
    replication_factor: Figure
    ram_headroom: Figure
    disk_headroom: Figure
    ingest_hours: Figure


#: The recorded inputs. ESTIMATE marks a figure that no benchmark printed yet; the guide says how
#: each estimate was derived, and `--from` flags replace them with measured values.
RECORDED = Inputs(
    ram_bytes=Figure(
        2_518,
        "B/cell",
        "benchmarks/bench_vectorstore.py int8 RSS, slope between 20k and 100k cells "
        "(6,949 and 3,404 B/cell): mapped file pages included, so an upper bound",
    ),
    disk_bytes=Figure(
        1_635,
        "B/cell",
        "benchmarks/bench_vectorstore.py --cells 100000, int8 (originals + codes), WAL excluded",
    ),
    ingest_cells_per_s_per_gpu=Figure(
        16_060,
        "cells/s",
        "deploy/measure_worker_gpu.py embed_raw_cuda, H200 + 16 cores: embedding stage only, "
        "an upper bound until benchmarks/bench_ingest.py measures end to end",
    ),
    upsert_cells_per_s_per_node=Figure(
        14_568,
        "cells/s",
        "ESTIMATE: benchmarks/bench_vectorstore.py upserted 1,821 cells/s on 2 shared cores; "
        "x8 for a 16-core node, assuming linear scaling",
    ),
    node_ram_gib=Figure(128, "GiB", "assumption: a 128 GiB Qdrant node"),
    node_disk_gib=Figure(2_048, "GiB", "assumption: 2 TiB local NVMe per Qdrant node"),
    replication_factor=Figure(2, "copies", "guide: replication_factor=2 (survives one node)"),
    ram_headroom=Figure(1.25, "x", "guide: optimiser and query buffers (RSS has the page cache)"),
    disk_headroom=Figure(2.0, "x", "guide: optimiser rewrites segments; snapshots"),
    ingest_hours=Figure(24, "h", "assumption: the whole atlas re-ingested within a day"),
)


@dataclass(frozen=True)
class Row:
    """What one atlas size needs."""

    cells: int
    ram_gib: float  # all replicas, with headroom
    disk_gib: float  # all replicas, with headroom
    qdrant_nodes: int
    gpus: int
    ingest_hours_one_gpu: float


def size(cells: int, inputs: Inputs) -> Row:
    """The resources for ``cells`` stored cells under ``inputs``.

    GPU workers: enough to ingest the atlas within ``ingest_hours``. Qdrant nodes: enough for
    the RAM, for the disk, for one node per replica, and for absorbing the workers' upserts
    (every replica writes every point, so each copy costs one node's upsert rate).
    """
    copies = inputs.replication_factor.value
    ram = cells * inputs.ram_bytes.value * copies * inputs.ram_headroom.value / GIB
    disk = cells * inputs.disk_bytes.value * copies * inputs.disk_headroom.value / GIB
    seconds_one_gpu = cells / inputs.ingest_cells_per_s_per_gpu.value
    gpus = max(1, math.ceil(seconds_one_gpu / (inputs.ingest_hours.value * 3600)))
    ingest_rate = gpus * inputs.ingest_cells_per_s_per_gpu.value
    nodes = max(
        math.ceil(ram / inputs.node_ram_gib.value),
        math.ceil(disk / inputs.node_disk_gib.value),
        math.ceil(ingest_rate * copies / inputs.upsert_cells_per_s_per_node.value),
        int(copies),
    )
    return Row(cells, ram, disk, nodes, gpus, seconds_one_gpu / 3600)


def human_cells(cells: int) -> str:
    return f"{cells // 1_000_000_000}B" if cells >= 1_000_000_000 else f"{cells // 1_000_000}M"


def render_table(inputs: Inputs, scales: Sequence[int] = SCALES) -> str:
    """The guide's markdown sizing table."""
    lines = [
        "| cells | RAM, all replicas | disk, all replicas | Qdrant nodes | GPU workers "
        "| ingest on 1 GPU | ingest with those GPUs |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for cells in scales:
        row = size(cells, inputs)
        lines.append(
            f"| {human_cells(cells)} | {row.ram_gib:,.0f} GiB | {row.disk_gib:,.0f} GiB "
            f"| {row.qdrant_nodes} | {row.gpus} | {row.ingest_hours_one_gpu:,.1f} h "
            f"| {row.ingest_hours_one_gpu / row.gpus:,.1f} h |"
        )
    return "\n".join(lines)


def render_inputs(inputs: Inputs) -> str:
    """The table of inputs with their sources, printed beside the sizing table."""
    lines = ["| input | value | source |", "| --- | ---: | --- |"]
    for f in fields(inputs):
        fig: Figure = getattr(inputs, f.name)
        lines.append(f"| `{f.name}` | {fig.value:,g} {fig.unit} | {fig.source} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the inputs and the sizing table, with any input overridden from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f in fields(Inputs):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=float, metavar="VALUE")
    args = parser.parse_args(argv)
    inputs = RECORDED
    for f in fields(Inputs):
        value = getattr(args, f.name)
        if value is not None:
            old: Figure = getattr(inputs, f.name)
            inputs = replace(inputs, **{f.name: Figure(value, old.unit, "command line")})
    print(render_inputs(inputs))
    print()
    print(render_table(inputs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
