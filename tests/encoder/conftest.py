"""Fixtures for encoder tests: a small random model with realistic BatchNorm statistics."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

# pytest's prepend import mode puts tests/ on sys.path, where tests/encoder would shadow the
# real package as a namespace package: the repository root goes first.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import torch  # noqa: E402

from encoder import CellEncoder, EncoderConfig  # noqa: E402
from encoder.module import AutoEncoder  # noqa: E402

N_GENES = 300


def randomize_batchnorm(module: torch.nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial running stats and affine weights (as after training)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=gen) * 0.4 - 0.2)
                m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)


@pytest.fixture
def randomize() -> Callable[..., None]:
    """The BatchNorm randomiser, for tests that build their own modules."""
    return randomize_batchnorm


@pytest.fixture
def genes() -> list[str]:
    return [f"GENE{i}" for i in range(N_GENES)]


@pytest.fixture
def small_encoder(genes: list[str]) -> CellEncoder:
    torch.manual_seed(0)
    module = AutoEncoder(EncoderConfig(n_genes=N_GENES, hidden_dims=(64, 64), latent_dim=128))
    randomize_batchnorm(module)
    return CellEncoder(module, genes, labels=["CL:0000236", "CL:0000084"])


@pytest.fixture
def counts() -> sp.csr_matrix:
    """Raw counts: 500 cells, ~10% of genes detected, integer values."""
    rng = np.random.default_rng(0)
    x = sp.random(500, N_GENES, density=0.1, format="csr", random_state=rng, dtype=np.float32)
    x.data = rng.poisson(3.0, x.nnz).astype(np.float32) + 1.0
    return x
