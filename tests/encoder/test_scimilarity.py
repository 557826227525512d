"""Import of SCimilarity's published model folder, written here in that format."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from encoder import CellEncoder, CheckpointError
from encoder.data import log_normalize

HIDDEN = [48, 48, 32]
LATENT = 16


def _scimilarity_encoder(n_genes: int) -> nn.ModuleList:
    """SCimilarity's encoder layout: network.<i> = Sequential(Dropout, Linear, BN, PReLU)."""
    dims = [n_genes, *HIDDEN]
    net = nn.ModuleList(
        nn.Sequential(
            nn.Dropout(0.4 if i == 0 else 0.5),
            nn.Linear(dims[i], dims[i + 1]),
            nn.BatchNorm1d(dims[i + 1]),
            nn.PReLU(),
        )
        for i in range(len(HIDDEN))
    )
    net.append(nn.Linear(HIDDEN[-1], LATENT))
    return net


def _decoder(n_genes: int) -> nn.ModuleList:
    """A mirrored decoder whose blocks are ordered Linear, BN, PReLU, Dropout."""
    dims = [LATENT, *reversed(HIDDEN)]
    net = nn.ModuleList(
        nn.Sequential(
            nn.Linear(dims[i], dims[i + 1]),
            nn.BatchNorm1d(dims[i + 1]),
            nn.PReLU(),
            nn.Dropout(0.5),
        )
        for i in range(len(HIDDEN))
    )
    net.append(nn.Linear(HIDDEN[0], n_genes))
    return net


def _write_folder(folder: Path, genes: list[str], randomize, *, with_decoder: bool = True):
    torch.manual_seed(4)
    holder = nn.Module()
    holder.network = _scimilarity_encoder(len(genes))
    randomize(holder, seed=5)
    folder.mkdir()
    state = holder.state_dict()
    torch.save({"state_dict": state}, folder / "encoder.ckpt")
    if with_decoder:
        dec = nn.Module()
        dec.network = _decoder(len(genes))
        torch.save({"state_dict": dec.state_dict()}, folder / "decoder.ckpt")
    sizes = {k: list(v.shape) for k, v in state.items()}
    (folder / "layer_sizes.json").write_text(json.dumps(sizes))
    (folder / "gene_order.tsv").write_text("\n".join(genes) + "\n")
    with (folder / "label_ints.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["", "0"])
        for i, label in enumerate(["T cell", "B cell", "monocyte"]):
            writer.writerow([i, label])
    return holder.eval()


def _reference(holder: nn.Module, x: np.ndarray) -> np.ndarray:
    h = torch.from_numpy(x)
    with torch.no_grad():
        for layer in holder.network:
            h = layer(h)
        return F.normalize(h, dim=1).numpy()


def test_scimilarity_folder_loads_and_embeds_identically(tmp_path, genes, counts, randomize):
    holder = _write_folder(tmp_path / "model_v1", genes, randomize)
    enc = CellEncoder.load_scimilarity(tmp_path / "model_v1")
    assert enc.genes == genes
    assert enc.labels == ["T cell", "B cell", "monocyte"]
    assert enc.config.hidden_dims == tuple(HIDDEN)
    assert enc.embedding_dim == LATENT
    assert enc.training["decoder_loaded"] is True
    expected = _reference(holder, log_normalize(counts).toarray())
    got = enc.embed(counts)
    assert np.abs(got - expected).max() < 1e-5
    # and it can be re-saved as our checkpoint and loaded back unchanged
    again = CellEncoder.load(enc.save(tmp_path / "ours"))
    np.testing.assert_array_equal(again.embed(counts), got)


def test_decoder_is_optional(tmp_path, genes, randomize):
    _write_folder(tmp_path / "m", genes, randomize, with_decoder=False)
    enc = CellEncoder.load_scimilarity(tmp_path / "m")
    assert enc.training["decoder_loaded"] is False


def test_incomplete_or_inconsistent_folder_is_refused(tmp_path, genes, randomize):
    folder = tmp_path / "m"
    _write_folder(folder, genes, randomize)
    (folder / "gene_order.tsv").write_text("\n".join(genes[:-1]) + "\n")
    with pytest.raises(CheckpointError, match="genes"):
        CellEncoder.load_scimilarity(folder)
    (folder / "encoder.ckpt").unlink()
    with pytest.raises(CheckpointError, match=r"encoder\.ckpt"):
        CellEncoder.load_scimilarity(folder)
