"""Checkpoint folder: bit-for-bit round trip, manifest checks, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from encoder import CellEncoder, CheckpointError


def test_round_trip_is_bit_for_bit(small_encoder, counts, tmp_path):
    first = small_encoder.save(tmp_path / "a")
    loaded = CellEncoder.load(first)
    original = small_encoder.module.state_dict()
    for key, value in loaded.module.state_dict().items():
        assert torch.equal(value, original[key]), key
    assert loaded.genes == small_encoder.genes
    assert loaded.labels == small_encoder.labels
    assert loaded.model_version == small_encoder.model_version
    np.testing.assert_array_equal(loaded.embed(counts), small_encoder.embed(counts))
    second = loaded.save(tmp_path / "b")
    for name in ("weights.safetensors", "config.json", "genes.txt", "labels.json", "manifest.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_tampered_weights_are_refused(small_encoder, tmp_path):
    folder = small_encoder.save(tmp_path / "m")
    weights = folder / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="altered"):
        CellEncoder.load(folder)


def test_tampered_gene_order_is_refused(small_encoder, tmp_path):
    folder = small_encoder.save(tmp_path / "m")
    genes = (folder / "genes.txt").read_text().splitlines()
    genes[0], genes[1] = genes[1], genes[0]
    (folder / "genes.txt").write_text("\n".join(genes) + "\n")
    with pytest.raises(CheckpointError, match=r"genes\.txt was altered"):
        CellEncoder.load(folder)


def test_missing_file_is_refused(small_encoder, tmp_path):
    folder = small_encoder.save(tmp_path / "m")
    (folder / "config.json").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        CellEncoder.load(folder)


def test_missing_manifest_and_unknown_format(small_encoder, tmp_path):
    folder = small_encoder.save(tmp_path / "m")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["format"] = "something-else/9"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="format"):
        CellEncoder.load(folder)
    (folder / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="manifest"):
        CellEncoder.load(folder)
    with pytest.raises(CheckpointError, match="does not exist"):
        CellEncoder.load(tmp_path / "nowhere")


def test_default_model_loads_verified_and_embeds():
    from encoder import load_default

    enc = load_default()
    assert enc.embedding_dim == 128
    assert len(enc.genes) == enc.config.n_genes
    assert enc.labels and all(label.startswith("CL:") for label in enc.labels)
    rng = np.random.default_rng(0)
    counts = rng.poisson(0.5, size=(20, len(enc.genes))).astype(np.float32)
    z = enc.embed(counts)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
