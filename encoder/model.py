"""``CellEncoder``: the facade workers, services and notebooks use.

It owns the trained module, the gene order and the label vocabulary, and hides
the rest: alignment, log-normalisation, batching, the sparse first layer on CPU
(see :mod:`encoder.sparse`) and device placement.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from safetensors.torch import save as safetensors_bytes

from encoder.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from encoder.config import EncoderConfig, TrainConfig, resolve_device
from encoder.data import (
    DEFAULT_MIN_OVERLAP,
    DEFAULT_TARGET_SUM,
    GeneAligner,
    iter_raw_blocks,
    log_normalize,
)
from encoder.module import AutoEncoder
from encoder.sparse import SparseEmbedder

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"


class CellEncoder:
    """A trained encoder with its gene order: raw counts in, 128-d unit vectors out."""

    def __init__(
        self,
        module: AutoEncoder,
        genes: Sequence[str],
        *,
        labels: Sequence[str] = (),
        training: dict[str, Any] | None = None,
        device: str | None = "cpu",
    ) -> None:
        if len(genes) != module.config.n_genes:
            msg = f"{len(genes)} gene names for a model of {module.config.n_genes} genes"
            raise ValueError(msg)
        self.module = module.eval()
        self.genes = list(genes)
        self.labels = list(labels)
        self.training = dict(training or {})
        self.device = resolve_device(device)
        self.module.to(self.device)
        self._sparse: SparseEmbedder | None = None
        self._version: str | None = None

    # ----------------------------------------------------------------- properties
    @property
    def config(self) -> EncoderConfig:
        """The network's shape."""
        return self.module.config

    @property
    def embedding_dim(self) -> int:
        """Length of each embedding (128 for SCimilarity's architecture)."""
        return self.config.latent_dim

    @property
    def target_sum(self) -> float:
        """Counts per cell after normalisation (SCimilarity: 10,000)."""
        return float(self.training.get("target_sum", DEFAULT_TARGET_SUM))

    @property
    def model_version(self) -> str:
        """Short sha256 of the encoder weights: equal weights, equal version."""
        if self._version is None:
            state = {
                k: v.detach().cpu().contiguous()
                for k, v in sorted(self.module.encoder.state_dict().items())
            }
            self._version = hashlib.sha256(safetensors_bytes(state)).hexdigest()[:12]
        return self._version

    def _invalidate(self) -> None:
        self._sparse = None
        self._version = None

    # ----------------------------------------------------------------- persistence
    def to_checkpoint(self) -> Checkpoint:
        """The in-memory checkpoint (weights on CPU)."""
        return Checkpoint(
            config=self.config,
            state_dict={k: v.detach().cpu() for k, v in self.module.state_dict().items()},
            genes=self.genes,
            labels=self.labels,
            training=self.training,
        )

    def save(self, path: str | Path) -> Path:
        """Write a checkpoint folder (see :mod:`encoder.checkpoint`)."""
        return save_checkpoint(path, self.to_checkpoint())

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint, *, device: str | None = "cpu") -> CellEncoder:
        """Build from an in-memory checkpoint; a missing decoder keeps its initial weights."""
        module = AutoEncoder(ckpt.config)
        missing, unexpected = module.load_state_dict(ckpt.state_dict, strict=False)
        missing_enc = [k for k in missing if k.startswith("encoder.")]
        if missing_enc or unexpected:
            msg = (
                f"checkpoint weights do not fit the configured network: missing {missing_enc[:5]}"
                f", unexpected {unexpected[:5]}"
            )
            raise ValueError(msg)
        return cls(module, ckpt.genes, labels=ckpt.labels, training=ckpt.training, device=device)

    @classmethod
    def load(cls, path: str | Path, *, device: str | None = "cpu") -> CellEncoder:
        """Load our checkpoint folder; raises ``CheckpointError`` if a file is missing/altered."""
        return cls.from_checkpoint(load_checkpoint(path), device=device)

    @classmethod
    def load_scimilarity(cls, path: str | Path, *, device: str | None = "cpu") -> CellEncoder:
        """Load SCimilarity's published folder (encoder.ckpt, gene_order.tsv, ...)."""
        from encoder.scimilarity import read_scimilarity_folder

        return cls.from_checkpoint(read_scimilarity_folder(path), device=device)

    # ----------------------------------------------------------------- inference
    def sparse_embedder(self) -> SparseEmbedder:
        """The CPU inference engine (built lazily, rebuilt after training)."""
        if self._sparse is None:
            self._sparse = SparseEmbedder(self.module.encoder)
        return self._sparse

    def normalize(self, x: sp.csr_matrix) -> sp.csr_matrix:
        """Raw counts -> log1p(counts scaled to ``target_sum`` per cell), sparse."""
        return log_normalize(x, self.target_sum)

    @torch.no_grad()
    def _embed_normalized_dense(self, x: sp.csr_matrix) -> np.ndarray:
        """Reference path: densify and run the torch module (SCimilarity's way)."""
        coo = x.tocoo()
        idx = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
        dense = torch.sparse_coo_tensor(
            idx, torch.from_numpy(coo.data), size=x.shape, check_invariants=False
        )
        dense = dense.to(self.device).to_dense()
        self.module.eval()
        embedding: np.ndarray = self.module.encoder(dense).float().cpu().numpy()
        return embedding

    def embed(
        self,
        data: Any,
        *,
        gene_names: Sequence[str] | None = None,
        batch_size: int = 4096,
        normalized: bool = False,
        min_overlap: float = DEFAULT_MIN_OVERLAP,
        dense: bool = False,
        layer: str | None = None,
    ) -> np.ndarray:
        """Embed cells: float32 ``(n_cells, embedding_dim)``, each row of unit length.

        ``data`` is an AnnData (backed files stream slice by slice), a scipy
        sparse matrix, a numpy array, or an iterable of ``celldata`` chunks. It
        holds raw counts unless ``normalized=True`` (already log1p of counts per
        ``target_sum``). Columns are aligned to :attr:`genes` by ``gene_names``
        (AnnData and chunks bring their own ``var_names``); without names the
        input must already have the model's genes in order. ``dense=True``
        forces the densifying torch path (the reference the sparse path matches).
        An AnnData's counts follow the platform's one rule (``layers["counts"]``, else
        ``.raw``, else ``X``; ``layer=`` to choose, see ``celldata.counts``), and raw-count
        input that is not raw counts (log-normalised, scaled) is refused with ingestion's
        message.
        """
        if batch_size < 1:
            msg = f"batch_size must be positive, got {batch_size}"
            raise ValueError(msg)
        outputs: list[np.ndarray] = []
        aligners: dict[tuple[str, ...], GeneAligner] = {}
        use_sparse = not dense and self.device == "cpu"
        blocks = iter_raw_blocks(
            data, gene_names, batch_size, layer=layer, check_counts=not normalized
        )
        for block, names in blocks:
            key = tuple(names) if names is not None else ()
            if key not in aligners:
                aligners[key] = GeneAligner(self.genes, names, min_overlap=min_overlap)
            x = aligners[key].apply(block)
            if x.shape[0] == 0:
                continue
            if use_sparse and not normalized:  # the kernel log-normalises as it reads
                outputs.append(self.sparse_embedder().embed_counts(x, self.target_sum))
            elif use_sparse:
                outputs.append(self.sparse_embedder().embed_normalized(x))
            else:
                outputs.append(self._embed_normalized_dense(x if normalized else self.normalize(x)))
        if not outputs:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        return np.ascontiguousarray(np.vstack(outputs), dtype=np.float32)

    # ----------------------------------------------------------------- training
    @classmethod
    def train(
        cls,
        data: Any,
        *,
        config: TrainConfig | None = None,
        encoder_config: EncoderConfig | None = None,
        genes: Sequence[str] | None = None,
        checkpoint_dir: str | Path | None = None,
        resume: bool = False,
        related: Any = None,
    ) -> CellEncoder:
        """Train a new encoder (see :func:`encoder.train.fit` for the arguments)."""
        from encoder.train import fit

        ckpt = fit(
            data,
            config=config or TrainConfig(),
            encoder_config=encoder_config,
            genes=genes,
            checkpoint_dir=checkpoint_dir,
            resume=resume,
            related=related,
        )
        return cls.from_checkpoint(ckpt)

    def __repr__(self) -> str:
        return (
            f"CellEncoder(genes={len(self.genes)}, hidden={list(self.config.hidden_dims)}, "
            f"dim={self.embedding_dim}, version={self.model_version}, device={self.device!r})"
        )


def load_default(*, device: str | None = "cpu") -> CellEncoder:
    """The committed default model (``encoder/default_model/``); never downloads."""
    if not (DEFAULT_MODEL_DIR / "manifest.json").is_file():
        msg = (
            f"no default model at {DEFAULT_MODEL_DIR}; build it with "
            "`python -m encoder.build_default`"
        )
        raise FileNotFoundError(msg)
    return CellEncoder.load(DEFAULT_MODEL_DIR, device=device)
