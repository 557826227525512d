"""Read SCimilarity's published model folder (Heimberg et al., 2024).

The folder holds ``encoder.ckpt`` and ``decoder.ckpt`` (``torch.save`` of
``{"state_dict": ...}``), ``layer_sizes.json`` (parameter name -> shape),
``gene_order.tsv`` (one gene symbol per line, no header) and ``label_ints.csv``
(index column = integer, column ``0`` = cell type name). Their encoder uses the
same parameter layout as :class:`encoder.module.Encoder`, so it loads key for
key; the decoder is mapped block by block by shape and is optional (only
training needs it). Checkpoints are read with ``weights_only=True``: a pickle
from the internet never runs code here.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import torch

from encoder.checkpoint import Checkpoint, CheckpointError
from encoder.config import EncoderConfig

ENCODER_CKPT = "encoder.ckpt"
DECODER_CKPT = "decoder.ckpt"
LAYER_SIZES = "layer_sizes.json"
GENE_ORDER = "gene_order.tsv"
LABEL_INTS = "label_ints.csv"
_BLOCK = re.compile(r"^network\.(\d+)\.(?:(\d+)\.)?(\w+)$")


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        msg = f"cannot read {path} as a torch checkpoint: {exc}"
        raise CheckpointError(msg) from exc
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        msg = f"{path} holds no state_dict of tensors (expected torch.save({{'state_dict': ...}}))"
        raise CheckpointError(msg)
    return dict(state)


def _blocks(state: dict[str, torch.Tensor], source: Path) -> list[dict[str, torch.Tensor]]:
    """Group ``network.<i>[.<j>].<param>`` keys into per-block dicts keyed by role.

    A sub-module's role is read from its parameters, not its index: a 2-D weight
    is the Linear, running statistics mark the BatchNorm, a one-element weight is
    the PReLU. This also maps decoders whose blocks omit the leading Dropout.
    """
    modules: dict[tuple[int, int], dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        match = _BLOCK.match(key)
        if match is None:
            msg = f"unexpected parameter {key!r} in {source}: not a SCimilarity network layer"
            raise CheckpointError(msg)
        sub = int(match.group(2)) if match.group(2) is not None else -1
        modules.setdefault((int(match.group(1)), sub), {})[match.group(3)] = value
    blocks: dict[int, dict[str, torch.Tensor]] = {}
    for (index, _), params in sorted(modules.items()):
        weight = params.get("weight")
        if "running_mean" in params:
            role = "bn"
        elif weight is not None and weight.ndim == 2:
            role = "linear"
        elif weight is not None and weight.numel() == 1:
            role = "prelu"
        else:
            msg = f"cannot tell the layer type of network.{index} in {source}: {sorted(params)}"
            raise CheckpointError(msg)
        block = blocks.setdefault(index, {})
        for param, value in params.items():
            block[f"{role}.{param}"] = value
    return [blocks[i] for i in sorted(blocks)]


def _to_layout(blocks: list[dict[str, torch.Tensor]], prefix: str) -> dict[str, torch.Tensor]:
    """Blocks -> our parameter names (``<prefix>network.<i>.<1|2|3>.<param>``)."""
    out: dict[str, torch.Tensor] = {}
    roles = {"linear": 1, "bn": 2, "prelu": 3}
    last = len(blocks) - 1
    for i, block in enumerate(blocks):
        for name, value in block.items():
            role, param = name.split(".", 1)
            if i == last:
                out[f"{prefix}network.{i}.{param}"] = value
            else:
                out[f"{prefix}network.{i}.{roles[role]}.{param}"] = value
    return out


def _read_genes(path: Path) -> list[str]:
    genes = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    genes = [g for g in genes if g]
    if not genes:
        msg = f"{path} lists no genes"
        raise CheckpointError(msg)
    return genes


def _read_labels(path: Path) -> list[str]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    pairs = sorted((int(row[0]), row[1]) for row in rows[1:] if len(row) >= 2 and row[0])
    return [label for _, label in pairs]


def read_scimilarity_folder(path: str | Path) -> Checkpoint:
    """Read a SCimilarity model folder into a :class:`Checkpoint` of our layout."""
    folder = Path(path)
    missing = [n for n in (ENCODER_CKPT, GENE_ORDER, LAYER_SIZES) if not (folder / n).is_file()]
    if missing:
        msg = (
            f"{folder} is not a SCimilarity model folder: missing {missing} "
            f"(expected {ENCODER_CKPT}, {GENE_ORDER}, {LAYER_SIZES}, optionally "
            f"{DECODER_CKPT}, {LABEL_INTS})"
        )
        raise CheckpointError(msg)
    genes = _read_genes(folder / GENE_ORDER)
    enc_blocks = _blocks(_read_state(folder / ENCODER_CKPT), folder / ENCODER_CKPT)
    linears = [b["linear.weight"] for b in enc_blocks if "linear.weight" in b]
    if len(linears) != len(enc_blocks) or len(linears) < 2:
        msg = f"{folder / ENCODER_CKPT}: every block needs a Linear layer, found {len(linears)}"
        raise CheckpointError(msg)
    hidden = tuple(int(w.shape[0]) for w in linears[:-1])
    latent = int(linears[-1].shape[0])
    if int(linears[0].shape[1]) != len(genes):
        msg = (
            f"{folder / GENE_ORDER} lists {len(genes)} genes but the first layer of "
            f"{ENCODER_CKPT} takes {linears[0].shape[1]} inputs"
        )
        raise CheckpointError(msg)
    sizes: dict[str, Any] = json.loads((folder / LAYER_SIZES).read_text(encoding="utf-8"))
    declared = [tuple(v) for k, v in sorted(sizes.items()) if "weight" in k and len(v) > 1]
    if declared and [d[0] for d in declared] != [*hidden, latent]:
        msg = f"{folder / LAYER_SIZES} declares {declared}, {ENCODER_CKPT} has {[*hidden, latent]}"
        raise CheckpointError(msg)
    config = EncoderConfig(n_genes=len(genes), hidden_dims=hidden, latent_dim=latent)
    state = _to_layout(enc_blocks, "encoder.")
    decoder_loaded = False
    if (folder / DECODER_CKPT).is_file():
        dec_blocks = _blocks(_read_state(folder / DECODER_CKPT), folder / DECODER_CKPT)
        shapes = [tuple(b["linear.weight"].shape) for b in dec_blocks if "linear.weight" in b]
        dims = [latent, *reversed(hidden), len(genes)]
        if shapes == [(dims[i + 1], dims[i]) for i in range(len(dims) - 1)]:
            state.update(_to_layout(dec_blocks, "decoder."))
            decoder_loaded = True
    training = {
        "source": "scimilarity",
        "source_folder": folder.name,
        "decoder_loaded": decoder_loaded,
    }
    return Checkpoint(
        config=config,
        state_dict=state,
        genes=genes,
        labels=_read_labels(folder / LABEL_INTS),
        training=training,
    )
