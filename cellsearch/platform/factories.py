"""Open what the settings name: the store, the encoder, the ontologies — once, here.

The gRPC server, the Celery worker, the embedded platform and the in-process ``Atlas`` all
open their store and encoder through these functions, so a setting means the same thing
everywhere (a second copy of "which store does this configuration name" is how the service
and the worker used to disagree).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from cellsearch.platform.settings import Settings

if TYPE_CHECKING:
    from encoder import CellEncoder
    from vectorstore import CellStore


def open_store(settings: Settings) -> CellStore:
    """The store the settings name: a Qdrant server by URL, else the embedded shard."""
    from vectorstore import open_store as open_vectorstore

    config = settings.store_config()
    if settings.qdrant_url:
        key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        return open_vectorstore(
            url=settings.qdrant_url, api_key=key, collection=settings.collection, config=config
        )
    settings.store_path.mkdir(parents=True, exist_ok=True)
    return open_vectorstore(path=settings.store_path, collection=settings.collection, config=config)


def gpu_count() -> int:
    """CUDA devices torch can use (0 without a GPU)."""
    import torch

    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def resolve_device(settings: Settings, *, gpu_index: int | None = None) -> str:
    """``cuda:i`` for the i-th worker process on a GPU machine, else ``cpu``."""
    if settings.device == "cpu":
        return "cpu"
    n_gpus = gpu_count()
    if n_gpus == 0:
        if settings.device == "cuda":
            msg = "CELLSEARCH_DEVICE=cuda but torch sees no GPU; use auto or cpu"
            raise RuntimeError(msg)
        return "cpu"
    return f"cuda:{(gpu_index or 0) % n_gpus}"


def load_encoder(settings: Settings, *, device: str = "cpu") -> CellEncoder:
    """The checkpoint the settings name (``CELLSEARCH_MODEL_DIR``), else the bundled default."""
    import encoder

    if settings.model_dir is not None:
        return encoder.CellEncoder.load(settings.model_dir, device=device)
    return encoder.load_default(device=device)


def warm_ontologies(settings: Settings) -> None:
    """Load the ontology closures now, so the first job or query does not pay for it."""
    import ontology
    from celldata.validate import verify_assays

    for kind in ontology.KINDS:
        ontology.get_ontology(kind, cache_dir=settings.ontology_cache_dir)
    verify_assays({"EFO:0009922"}, "warm-up")  # loads the EFO terms (~0.2 s holding the GIL)


def warm_encoder(model: CellEncoder) -> None:
    """Embed a few cells now, so the first job does not pay for compiling the CPU kernel.

    The sparse embedder's numba kernel compiles on its first call (seconds, ~15 s on a busy
    2-core machine); a worker does that once at start-up instead of inside a job.
    """
    genes = list(model.genes)
    rng = np.random.default_rng(0)
    x = sp.random(8, len(genes), density=0.05, format="csr", random_state=rng, dtype=np.float32)
    x.data = np.ceil(x.data * 10)
    model.embed(x, gene_names=genes, batch_size=8)
