"""Embedding speed: our sparse first layer (C kernel, numba kernel) vs SCimilarity's dense one.

Runs both paths in one process on the same synthetic input (log-normalised, SCimilarity's
layer sizes: 28,000 genes -> 1024 -> 1024 -> 1024 -> 128, ~2,000 non-zero genes per cell
with a skewed detection rate per gene, as in real data) and prints medians side by side,
their ratio and the largest difference between the two embeddings. Also prints the hidden
layers alone (the ceiling for any first-layer trick). With ``--cuda`` and a GPU present,
adds the GPU dense path (sparse host->device copy, densified on the device).

Also prints where the sparse path's time goes (log-normalisation of raw counts, the first
layer, the hidden layers), process CPU time next to wall time (on a shared, overloaded machine
cells per CPU-second compare kernels more fairly than wall time), the load average, the
optional dense/sparse split (``--dense-threshold``), and the error bf16 weights would cost.

    python benchmarks/bench_encoder_speed.py --cells 8192 --repeats 3 --threads 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import scipy.sparse as sp
import torch

from encoder.config import EncoderConfig
from encoder.data import log_normalize
from encoder.module import Encoder
from encoder.sparse import SparseEmbedder, available_backends


def synthetic_cells(n_cells: int, n_genes: int, nnz: int, seed: int = 0) -> sp.csr_matrix:
    """Log-normalised CSR: gene detection rates ~ Beta(0.3, 3) scaled to ``nnz`` per cell."""
    rng = np.random.default_rng(seed)
    p = rng.beta(0.3, 3.0, n_genes)
    p = np.clip(p / p.mean() * nnz / n_genes, 0.0, 1.0)
    rows = []
    for start in range(0, n_cells, 1024):
        n = min(1024, n_cells - start)
        mask = rng.random((n, n_genes), dtype=np.float32) < p.astype(np.float32)
        block = sp.csr_matrix(mask.astype(np.float32))
        counts = rng.poisson(1.5, block.nnz).astype(np.float32) + 1.0
        totals = np.add.reduceat(counts, block.indptr[:-1]) if block.nnz else counts
        scale = np.repeat(1e4 / totals, np.diff(block.indptr))
        block.data = np.log1p(counts * scale).astype(np.float32)
        rows.append(block)
    return sp.vstack(rows, format="csr")


def randomize_batchnorm(module: torch.nn.Module) -> None:
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=gen) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)


def timed(fn, repeats: int) -> tuple[float, object, float]:
    """Median wall seconds, the last output, median process CPU seconds."""
    out, times, cpu = None, [], []
    for _ in range(repeats):
        start, cpu0 = time.perf_counter(), time.process_time()
        out = fn()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu0)
    return statistics.median(times), out, statistics.median(cpu)


def bf16_error(enc: Encoder, x: sp.csr_matrix) -> float:
    """Max embedding difference when the first layer's weights are rounded to bf16."""
    rounded = Encoder(enc.config).eval()
    rounded.load_state_dict(enc.state_dict())
    with torch.no_grad():
        w = rounded.first_linear().weight
        w.copy_(w.bfloat16().float())
        dense = torch.from_numpy(x.toarray())
        return float((rounded(dense) - enc(dense)).abs().max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=8192)
    parser.add_argument("--genes", type=int, default=28000)
    parser.add_argument("--nnz", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--cell-block", type=int, default=None, help="default: the backend's")
    parser.add_argument("--gene-block", type=int, default=512, help="C kernel's gene block")
    parser.add_argument(
        "--dense-threshold",
        type=float,
        default=None,
        help="also time the split: genes in >= this fraction of a batch's cells go to a GEMM",
    )
    parser.add_argument("--cuda", action="store_true")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    try:
        import numba

        numba.set_num_threads(args.threads)
    except ImportError:
        pass
    torch.manual_seed(0)
    enc = Encoder(EncoderConfig(n_genes=args.genes)).eval()
    randomize_batchnorm(enc)
    x = synthetic_cells(args.cells, args.genes, args.nnz)
    batches = [x[s : s + args.batch] for s in range(0, x.shape[0], args.batch)]
    print(
        f"input: {x.shape[0]} cells x {x.shape[1]} genes, {x.nnz / x.shape[0]:.0f} nnz/cell; "
        f"batch {args.batch}; threads {args.threads}; torch {torch.__version__}"
    )

    @torch.no_grad()
    def dense() -> np.ndarray:
        return np.vstack([enc(torch.from_numpy(b.toarray())).numpy() for b in batches])

    kernels = [b for b in available_backends() if b != "scipy"]
    embedders = {
        b: SparseEmbedder(
            enc, backend=b, tile=args.tile, cell_block=args.cell_block, gene_block=args.gene_block
        )
        for b in kernels
    }
    for e in embedders.values():
        e.embed_normalized(batches[0][:64])  # compile the numba kernel outside the timing
    fast = embedders[kernels[0]]
    print(f"sparse backends: {', '.join(kernels)} (the rows below without one use {kernels[0]})")

    def sparse_with(embedder: SparseEmbedder):
        return lambda: np.vstack([embedder.embed_normalized(b) for b in batches])

    hidden_in = [torch.randn(b.shape[0], enc.config.hidden_dims[0]) for b in batches]

    @torch.no_grad()
    def hidden_only() -> None:
        for h in hidden_in:
            enc.hidden(h)

    n = x.shape[0]
    raw = x.copy()
    raw.data = np.expm1(raw.data)  # per-10k counts: normalising them gives x back

    def normalise() -> None:
        for s in range(0, raw.shape[0], args.batch):
            log_normalize(raw[s : s + args.batch])

    def sparse_from_raw() -> np.ndarray:
        return np.vstack(
            [fast.embed_counts(raw[s : s + args.batch], 1e4) for s in range(0, n, args.batch)]
        )

    def sparse_raw_two_pass() -> np.ndarray:
        return np.vstack(
            [
                fast.embed_normalized(log_normalize(raw[s : s + args.batch]))
                for s in range(0, n, args.batch)
            ]
        )

    def first_layer() -> None:
        for b in batches:
            fast.first_layer(b)

    load = os.getloadavg()[0]
    t_dense, z_dense, c_dense = timed(dense, args.repeats)
    by_backend = {b: timed(sparse_with(e), args.repeats) for b, e in embedders.items()}
    t_hidden, _, c_hidden = timed(hidden_only, args.repeats)
    t_first, _, c_first = timed(first_layer, args.repeats)
    t_norm, _, c_norm = timed(normalise, args.repeats)
    t_raw, z_raw, c_raw = timed(sparse_from_raw, args.repeats)
    t_raw2, _, c_raw2 = timed(sparse_raw_two_pass, args.repeats)
    raw_diff = float(np.abs(np.asarray(z_raw) - np.asarray(z_dense)).max())
    rows = [
        ("dense first layer (SCimilarity, baseline)", t_dense, c_dense),
        *((f"sparse first layer, {b} kernel (ours)", t, c) for b, (t, _, c) in by_backend.items()),
        ("hidden layers alone (ceiling)", t_hidden, c_hidden),
        ("  ours: first layer alone", t_first, c_first),
        ("  log-normalisation of raw counts", t_norm, c_norm),
        ("raw counts: log_normalize, then ours", t_raw2, c_raw2),
        ("raw counts: normalised inside our kernel", t_raw, c_raw),
    ]
    if args.dense_threshold is not None:
        split = SparseEmbedder(
            enc,
            backend=kernels[0],
            tile=args.tile,
            cell_block=args.cell_block,
            dense_threshold=args.dense_threshold,
        )
        split.embed_normalized(batches[0])

        def split_path() -> np.ndarray:
            return np.vstack([split.embed_normalized(b) for b in batches])

        t_split, z_split, c_split = timed(split_path, args.repeats)
        split_diff = float(np.abs(np.asarray(z_split) - np.asarray(z_dense)).max())
        rows.insert(2, (f"ours + dense split >= {args.dense_threshold:g}", t_split, c_split))
    print(f"{'path':<44}{'cells/s (median)':>18}{'cells/CPU-s':>14}")
    for name, t_wall, t_cpu in rows:
        print(f"{name:<44}{n / t_wall:>18,.0f}{n / t_cpu:>14,.0f}")
    for b, (t_b, z_b, c_b) in by_backend.items():
        d_b = float(np.abs(np.asarray(z_b) - np.asarray(z_dense)).max())
        print(
            f"speed-up {b}/dense: {t_dense / t_b:.2f}x wall, {c_dense / c_b:.2f}x CPU; "
            f"max |{b} - dense| = {d_b:.2e}"
        )
    print(f"load average {load:.1f} -> {os.getloadavg()[0]:.1f}")
    print(
        f"raw counts: in-kernel normalisation {t_raw2 / t_raw:.2f}x the two-pass path; "
        f"max |in-kernel - dense| = {raw_diff:.2e}"
    )
    if args.dense_threshold is not None:
        print(
            f"speed-up split/dense: {t_dense / t_split:.2f}x wall; "
            f"max |split - dense| = {split_diff:.2e}"
        )
    print(
        f"bf16 first-layer weights would move embeddings by {bf16_error(enc, batches[0][:512]):.1e}"
    )

    if args.cuda and torch.cuda.is_available():
        gpu = enc.cuda()

        @torch.no_grad()
        def cuda_dense() -> np.ndarray:
            outs = []
            for b in batches:
                t = torch.sparse_csr_tensor(
                    torch.from_numpy(b.indptr.astype(np.int64)),
                    torch.from_numpy(b.indices.astype(np.int64)),
                    torch.from_numpy(b.data),
                    size=b.shape,
                ).to("cuda")
                outs.append(gpu(t.to_dense()))
            return torch.cat(outs).cpu().numpy()

        cuda_dense()
        torch.cuda.synchronize()
        t_gpu, z_gpu, _ = timed(cuda_dense, args.repeats)
        gdiff = float(np.abs(np.asarray(z_gpu) - np.asarray(z_dense)).max())
        print(f"{'cuda dense (' + torch.cuda.get_device_name() + ')':<44}{n / t_gpu:>18,.0f}")
        print(f"max |cuda - cpu dense| = {gdiff:.2e}")


if __name__ == "__main__":
    main()
