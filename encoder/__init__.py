"""The SCimilarity-style metric-learning encoder: data, module, losses, training, facade.

Public API::

    from encoder import CellEncoder, EncoderConfig, TrainConfig, load_default
    enc = load_default()
    z = enc.embed(adata)  # float32 (n_cells, 128), unit rows
"""

from __future__ import annotations

from encoder.checkpoint import CheckpointError
from encoder.config import EncoderConfig, TrainConfig
from encoder.model import CellEncoder, load_default

__all__ = ["CellEncoder", "CheckpointError", "EncoderConfig", "TrainConfig", "load_default"]
