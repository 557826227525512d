"""The torch modules: SCimilarity's encoder, its mirrored decoder, and the pair.

Pure maths, no data handling. Parameter names follow SCimilarity's layout
(``network.<block>.<1 linear|2 batchnorm|3 prelu>`` and ``network.<last>`` for the
output projection) so its published ``encoder.ckpt`` maps onto this module key
for key.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from encoder.config import EncoderConfig


def _block(n_in: int, n_out: int, dropout: float, eps: float) -> nn.Sequential:
    """Dropout -> Linear -> BatchNorm -> PReLU, indexed 0..3 as in SCimilarity."""
    return nn.Sequential(
        nn.Dropout(p=dropout),
        nn.Linear(n_in, n_out),
        nn.BatchNorm1d(n_out, eps=eps),
        nn.PReLU(),
    )


class Encoder(nn.Module):
    """Gene expression (log-normalised) -> unit vector of ``latent_dim``."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        dims = (config.n_genes, *config.hidden_dims)
        self.network = nn.ModuleList()
        for i in range(len(config.hidden_dims)):
            p = config.input_dropout if i == 0 else config.dropout
            self.network.append(_block(dims[i], dims[i + 1], p, config.batchnorm_eps))
        self.network.append(nn.Linear(config.hidden_dims[-1], config.latent_dim))

    def first_block(self) -> nn.Sequential:
        """Block 0 (built by :func:`_block`): Dropout, the gene-space Linear, BatchNorm, PReLU."""
        return cast(nn.Sequential, self.network[0])

    def first_linear(self) -> nn.Linear:
        """The gene-space Linear layer (the one the sparse path replaces)."""
        return cast(nn.Linear, self.first_block()[1])

    def hidden(self, h: torch.Tensor) -> torch.Tensor:
        """Everything after the first Linear: BN/PReLU of block 0, later blocks, output."""
        block = self.first_block()
        h = block[3](block[2](h))
        for layer in self.network[1:]:
            h = layer(h)
        return F.normalize(h, p=2, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        block = self.first_block()
        h = block[1](block[0](x))
        return self.hidden(h)


class Decoder(nn.Module):
    """Embedding -> reconstructed log-normalised expression (hidden sizes reversed)."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        dims = (config.latent_dim, *reversed(config.hidden_dims))
        self.network = nn.ModuleList()
        for i in range(len(config.hidden_dims)):
            p = 0.0 if i == 0 else config.dropout
            self.network.append(_block(dims[i], dims[i + 1], p, config.batchnorm_eps))
        self.network.append(nn.Linear(dims[-1], config.n_genes))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        for layer in self.network:
            z = layer(z)
        return z


class AutoEncoder(nn.Module):
    """Encoder and decoder trained together (triplet on z, MSE on the reconstruction)."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(x)
        return z, self.decoder(z)
