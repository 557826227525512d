"""The checkpoint folder: weights, config, gene order, labels, training metadata, manifest.

A model is only usable with the gene order it was trained on, so the two travel
together (as scvi-tools does). ``manifest.json`` lists the sha256 of every other
file; loading recomputes them and refuses a folder where a file is missing or
was altered, so a worker never embeds with half-copied or edited weights.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from encoder.config import EncoderConfig

FORMAT = "cellsearch-encoder/1"
WEIGHTS = "weights.safetensors"
CONFIG = "config.json"
GENES = "genes.txt"
LABELS = "labels.json"
TRAINING = "training.json"
MANIFEST = "manifest.json"
REQUIRED = (WEIGHTS, CONFIG, GENES, LABELS, TRAINING)


class CheckpointError(RuntimeError):
    """A checkpoint folder is missing, incomplete, altered or of an unknown format."""


@dataclass
class Checkpoint:
    """The contents of a checkpoint folder, in memory."""

    config: EncoderConfig
    state_dict: dict[str, torch.Tensor]
    genes: list[str]
    labels: list[str] = field(default_factory=list)
    training: dict[str, Any] = field(default_factory=dict)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _dump_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def save_checkpoint(path: str | Path, ckpt: Checkpoint) -> Path:
    """Write ``ckpt`` to the folder ``path`` (created if needed) and its manifest last.

    The manifest is written after every file it lists, so an interrupted save
    leaves a folder that :func:`load_checkpoint` rejects rather than a silent
    mix of old and new files.
    """
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    manifest_path = folder / MANIFEST
    if manifest_path.exists():
        manifest_path.unlink()
    tensors = {k: v.detach().cpu().contiguous() for k, v in sorted(ckpt.state_dict.items())}
    save_file(tensors, str(folder / WEIGHTS), metadata={"format": FORMAT})
    _dump_json(folder / CONFIG, ckpt.config.to_dict())
    (folder / GENES).write_text("\n".join(ckpt.genes) + "\n", encoding="utf-8")
    _dump_json(folder / LABELS, list(ckpt.labels))
    _dump_json(folder / TRAINING, ckpt.training)
    files = {name: sha256_file(folder / name) for name in REQUIRED}
    _dump_json(manifest_path, {"format": FORMAT, "files": files})
    return folder


def verify_checkpoint(path: str | Path) -> dict[str, str]:
    """Check the manifest against the files; return ``{file: sha256}`` or raise CheckpointError."""
    folder = Path(path)
    if not folder.is_dir():
        msg = f"checkpoint folder {folder} does not exist or is not a directory"
        raise CheckpointError(msg)
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        msg = (
            f"{manifest_path} is missing: not a cellsearch checkpoint, or an interrupted save "
            "(for SCimilarity's published folder use CellEncoder.load_scimilarity)"
        )
        raise CheckpointError(msg)
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        msg = f"{manifest_path} is not valid JSON ({exc}); the checkpoint is damaged"
        raise CheckpointError(msg) from exc
    if manifest.get("format") != FORMAT:
        msg = f"{manifest_path} has format {manifest.get('format')!r}; this code reads {FORMAT!r}"
        raise CheckpointError(msg)
    files: dict[str, str] = manifest.get("files", {})
    not_listed = [name for name in REQUIRED if name not in files]
    if not_listed:
        msg = f"manifest of {folder} does not list {not_listed}; the checkpoint is damaged"
        raise CheckpointError(msg)
    for name, expected in files.items():
        file = folder / name
        if not file.is_file():
            msg = f"checkpoint file {file} is missing (listed in {MANIFEST}); re-copy the folder"
            raise CheckpointError(msg)
        actual = sha256_file(file)
        if actual != expected:
            msg = (
                f"checkpoint file {file} was altered: sha256 {actual[:12]}… but the manifest "
                f"says {expected[:12]}…; re-copy the folder or re-save the model"
            )
            raise CheckpointError(msg)
    return files


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Verify then read a checkpoint folder."""
    folder = Path(path)
    verify_checkpoint(folder)
    config = EncoderConfig.from_dict(json.loads((folder / CONFIG).read_text(encoding="utf-8")))
    genes = (folder / GENES).read_text(encoding="utf-8").splitlines()
    if len(genes) != config.n_genes:
        msg = f"{folder / GENES} lists {len(genes)} genes but config.n_genes is {config.n_genes}"
        raise CheckpointError(msg)
    return Checkpoint(
        config=config,
        state_dict=load_file(str(folder / WEIGHTS)),
        genes=genes,
        labels=json.loads((folder / LABELS).read_text(encoding="utf-8")),
        training=json.loads((folder / TRAINING).read_text(encoding="utf-8")),
    )
