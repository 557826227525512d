"""How many cells per second one GPU worker embeds, against the CPU in the same run.

The worker-sizing advice in deploy/README.md rests on one question: is an ingestion worker
bound by its GPU or by the CPU work around it? This measures both sides on the machine it runs
on, each as the median of repeated runs, with an SCimilarity-sized encoder (28,231 genes ->
3 x 1024 -> 128, random weights: speed does not depend on them) and synthetic raw counts with
``--nnz`` detected genes per cell:

- the torch module alone on the GPU (input already there, then with the copy from host memory,
  then from a CSR batch densified on the GPU): the GPU's ceiling;
- ``CellEncoder.embed`` on raw counts, on ``cuda`` and on ``cpu`` (the sparse CPU path): what a
  worker's embedding stage delivers, including gene alignment and normalisation.

    PYTHONPATH=. python deploy/measure_worker_gpu.py --cells 16384   # from the repository root
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp
import torch

from encoder.config import EncoderConfig
from encoder.model import CellEncoder
from encoder.module import AutoEncoder

SCIMILARITY_GENES = 28_231


def median_seconds(fn: Callable[[], object], reps: int) -> float:
    """Median wall time of ``reps`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def raw_counts(cells: int, genes: int, nnz: int, seed: int = 0) -> sp.csr_matrix:
    """Integer counts, ``nnz`` detected genes per cell, like a 10x library."""
    rng = np.random.default_rng(seed)
    cols = np.sort(rng.integers(0, genes, (cells, nnz)), axis=1).reshape(-1)
    vals = rng.integers(1, 10, cells * nnz).astype(np.float32)
    rows = np.repeat(np.arange(cells), nnz)
    x = sp.csr_matrix((vals, (rows, cols)), shape=(cells, genes))
    x.sum_duplicates()
    return x


@torch.no_grad()
def module_rates(encoder: torch.nn.Module, genes: int, batch: int, nnz: int) -> dict[str, float]:
    """Cells/s of the bare module on the GPU: on-device input, host copy, CSR densified."""
    on_gpu = torch.rand(batch, genes, device="cuda")
    pinned = torch.rand(batch, genes).pin_memory()
    csr = raw_counts(batch, genes, nnz)
    crow, cols = torch.from_numpy(csr.indptr), torch.from_numpy(csr.indices)
    vals = torch.from_numpy(csr.data)

    def on_device() -> None:
        encoder(on_gpu)
        torch.cuda.synchronize()

    def from_host() -> None:
        encoder(pinned.cuda(non_blocking=True))
        torch.cuda.synchronize()

    def from_csr() -> None:
        x = torch.sparse_csr_tensor(crow, cols, vals, (batch, genes), check_invariants=False)
        encoder(x.cuda().to_dense())
        torch.cuda.synchronize()

    return {
        "gpu_module_input_on_device": batch / median_seconds(on_device, 20),
        "gpu_module_incl_host_copy": batch / median_seconds(from_host, 10),
        "gpu_module_incl_csr_copy_densify": batch / median_seconds(from_csr, 10),
    }


def embed_rate(device: str, raw: sp.csr_matrix, batch: int, reps: int) -> float:
    """Cells/s of ``CellEncoder.embed`` on raw counts (alignment + normalisation included)."""
    genes = [f"G{i}" for i in range(raw.shape[1])]
    enc = CellEncoder(AutoEncoder(EncoderConfig(n_genes=raw.shape[1])), genes, device=device)
    return raw.shape[0] / median_seconds(lambda: enc.embed(raw, batch_size=batch), reps)


def main(argv: Sequence[str] | None = None) -> int:
    """Print each rate (cells/s) and the GPU/CPU ratio of the worker's embedding stage."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=16_384, help="cells per embed() call")
    parser.add_argument("--batch", type=int, default=4096, help="CELLSEARCH_EMBED_BATCH_SIZE")
    parser.add_argument("--nnz", type=int, default=2000, help="detected genes per cell")
    parser.add_argument("--genes", type=int, default=SCIMILARITY_GENES)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)

    cuda = torch.cuda.is_available()
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"{os.cpu_count()} CPUs, GPU: {torch.cuda.get_device_name(0) if cuda else 'none'}"
    )
    rates: dict[str, float] = {}
    if cuda:
        module = AutoEncoder(EncoderConfig(n_genes=args.genes)).encoder.eval().cuda()
        rates.update(module_rates(module, args.genes, args.batch, args.nnz))
    raw = raw_counts(args.cells, args.genes, args.nnz, seed=1)
    if cuda:
        rates["embed_raw_cuda"] = embed_rate("cuda", raw, args.batch, args.reps)
    rates["embed_raw_cpu_baseline"] = embed_rate("cpu", raw, args.batch, args.reps)
    for name, rate in rates.items():
        print(f"{name}: {rate:,.0f} cells/s (median of {args.reps}+ runs)")
    if cuda:
        ratio = rates["embed_raw_cuda"] / rates["embed_raw_cpu_baseline"]
        print(f"embed on cuda / embed on cpu: {ratio:.2f}x")
    print(json.dumps({k: round(v) for k, v in rates.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
