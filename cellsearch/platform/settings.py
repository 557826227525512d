"""The platform's configuration, in one typed place.

Every knob comes from an environment variable prefixed ``CELLSEARCH_`` (or a
``.env`` file); nothing else in the code base reads ``os.environ``. The core
packages (ontology, celldata, encoder, vectorstore) never import this module:
the service and the workers read ``Settings`` and pass plain values down.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

if TYPE_CHECKING:
    from vectorstore import StoreConfig


#: The file in an embedded store's folder that names the store (see ``embedded_store_id``).
STORE_ID_FILE = "cellsearch-store-id"


def embedded_store_id(folder: Path) -> str:
    """The identity of the embedded store in ``folder``: a random id kept in the folder.

    Written the first time it is asked for (the folder is made if need be), atomically: two
    processes asking at once get the same id. It lives and dies with the store's folder,
    beside the collection's shard (which the index build swaps for a rebuilt copy).
    """
    folder = Path(folder).expanduser()
    path = folder / STORE_ID_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    folder.mkdir(parents=True, exist_ok=True)
    draft = folder / f".{STORE_ID_FILE}.{uuid.uuid4().hex}"
    draft.write_text(uuid.uuid4().hex)
    try:
        os.link(draft, path)  # fails when another process got there first
    except FileExistsError:
        pass
    finally:
        draft.unlink()
    return path.read_text().strip()


class Settings(BaseSettings):
    """Where the store, broker, model and server live, and the request limits."""

    model_config = SettingsConfigDict(
        env_prefix="CELLSEARCH_", env_file=".env", extra="ignore", frozen=True
    )

    # --- vector store -------------------------------------------------------
    store_path: Path = Field(
        default=Path("var/store"),
        description="Folder of the embedded Qdrant engine (used when qdrant_url is unset).",
    )
    qdrant_url: str | None = Field(
        default=None, description="Qdrant server URL, e.g. http://qdrant:6334; selects scale mode."
    )
    qdrant_api_key: SecretStr | None = None
    collection: str = Field(default="cells", description="Collection (or shard) name.")
    quantization: Literal["none", "int8"] = "int8"
    hnsw_m: int = Field(default=32, ge=4, le=128)
    hnsw_ef_construct: int = Field(default=400, ge=8, le=1024)
    search_ef: int = Field(default=1024, ge=8, le=4096)
    compile_filters: bool = Field(
        default=True,
        description="Send filter conjunctions as one condition over payload groups (embedded).",
    )
    post_filter_min_share: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Post-filter filters matching at least this share of payload groups "
        "(a recall knob for broad filters); None: filtered HNSW always.",
    )

    # --- broker -------------------------------------------------------------
    redis_url: str = "redis://127.0.0.1:6379/0"

    # --- model and data -----------------------------------------------------
    model_dir: Path | None = Field(
        default=None, description="Encoder checkpoint folder; None means the bundled default model."
    )
    allowed_roots: Annotated[tuple[Path, ...], NoDecode] = Field(
        default=(Path("var/inbox"),),
        description=(
            "Folders ingestion may read from; any other path is refused. From the environment: "
            "one folder, several joined by the path separator (':'), or a JSON list."
        ),
    )
    ontology_cache_dir: Path | None = Field(
        default=None, description="Where closure caches are written; None: a user cache folder."
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    embed_batch_size: int = Field(default=4096, ge=1)
    ingest_chunk_cells: int = Field(default=8192, ge=64)
    ingest_visibility_timeout_s: float = Field(
        default=3600.0,
        gt=0,
        description="Redis redelivers an unacknowledged ingestion job after this long.",
    )
    ingest_time_limit_s: float = Field(default=21600.0, gt=0, description="Hard task limit.")
    ingest_optimize: bool = Field(
        default=True, description="Build the HNSW index after each ingestion job."
    )
    ingest_index_every_cells: int | None = Field(
        default=None,
        ge=1000,
        description="Also build the index every this many cells of a job (bounds the engine's "
        "unindexed in-memory segment, ~3.5 KB a cell); None: at the end of the job only.",
    )
    embedded_index_build: Literal["after_job", "at_start"] = Field(
        default="after_job",
        description="When `serve` (embedded: server and worker in one process) builds the "
        "HNSW index: after each job, on a copy in a subprocess swapped in at the end "
        "(serving goes on; vectorstore.offline), or only at start, before it reports SERVING.",
    )
    job_lease_s: float = Field(
        default=15.0,
        gt=0,
        description="A running job's lease; a started job whose worker stopped renewing it "
        "for this long is resumed by another worker (crash recovery).",
    )
    jobs_db: Path | None = Field(
        default=None,
        description="sqlite file of job records and the dataset registry in the embedded mode "
        "without Redis; None: jobs.sqlite3 beside the store folder.",
    )

    namespace: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Redis key prefix and Celery queue prefix of this platform's jobs and "
        "dataset registry; None: derived from the store (see ``jobs_namespace``).",
    )

    # --- gRPC server --------------------------------------------------------
    grpc_address: str = "127.0.0.1:50051"
    auth_token: SecretStr | None = Field(
        default=None, description="Bearer token required on every RPC except health; None: no auth."
    )
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    grpc_workers: int = Field(default=16, ge=1)
    shutdown_grace_s: float = Field(default=5.0, ge=0)
    drain_s: float = Field(
        default=2.0,
        ge=0,
        description="On SIGTERM, report NOT_SERVING this long (load balancers move away) "
        "before refusing new calls; in-flight calls then get shutdown_grace_s.",
    )
    max_watchers: int = Field(
        default=8,
        ge=1,
        description="Concurrent WatchJob streams; more are refused (RESOURCE_EXHAUSTED), so "
        "watchers never take the threads unary calls need. Keep below grpc_workers.",
    )
    watch_max_s: float = Field(
        default=600.0, gt=0, description="A WatchJob stream ends after this long (re-watch)."
    )

    # --- operations ---------------------------------------------------------
    metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Serve Prometheus metrics on this port (0: any free port); None: off.",
    )
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"

    # --- request limits -----------------------------------------------------
    max_k: int = Field(default=10_000, ge=1)
    max_query_cells: int = Field(default=10_000, ge=1)
    max_message_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    max_request_hits: int = Field(
        default=200_000,
        ge=1,
        description="Budget of one request: query cells x k neighbours (searched or returned).",
    )
    max_metadata_entries: int = Field(default=64, ge=0)
    max_metadata_bytes: int = Field(
        default=16 * 1024, ge=0, description="Keys and values of a submission's metadata."
    )

    @field_validator("allowed_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: Any) -> Any:
        """``CELLSEARCH_ALLOWED_ROOTS=/data/inbox`` or ``/a:/b`` as a shell user writes it."""
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return tuple(part for part in text.split(os.pathsep) if part)

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            msg = "CELLSEARCH_TLS_CERT_FILE and CELLSEARCH_TLS_KEY_FILE must be set together"
            raise ValueError(msg)
        return self

    @property
    def jobs_db_path(self) -> Path:
        """Where the embedded mode without Redis keeps its job records and registry."""
        if self.jobs_db is not None:
            return self.jobs_db
        return self.store_path.parent / f"{self.store_path.name}.jobs.sqlite3"

    @property
    def jobs_namespace(self) -> str:
        """Where this platform's jobs and dataset registry live in Redis, and its queues.

        One namespace per store: two platforms sharing a Redis (two embedded stores on one
        machine, a test beside a running server) must neither see each other's datasets, a
        fresh store refusing a dataset id only the other one holds, nor take each other's
        jobs off the queue, embedding a file into the wrong store. An embedded store is known
        by the id written into its folder (:func:`embedded_store_id`), so a store deleted and
        made again at the same path starts with an empty registry too; a Qdrant server's
        collection by its URL and name, so every server and worker of a deployment agrees
        without being told. ``CELLSEARCH_NAMESPACE`` names it outright (readable keys).
        """
        if self.namespace:
            return self.namespace
        if self.qdrant_url:
            identity = f"{self.qdrant_url.rstrip('/')}/{self.collection}"
        else:
            identity = embedded_store_id(self.store_path)
        return f"cellsearch-{hashlib.sha256(identity.encode()).hexdigest()[:10]}"

    @property
    def store_mode(self) -> Literal["embedded", "server"]:
        """``server`` when a Qdrant URL is configured, else the in-process engine."""
        return "server" if self.qdrant_url else "embedded"

    def store_config(self) -> StoreConfig:
        """The vector store's schema and query knobs these settings name (workers and the
        service both open the store through this, so they can never disagree)."""
        from vectorstore import StoreConfig

        return StoreConfig(
            quantization=self.quantization,
            hnsw_m=self.hnsw_m,
            hnsw_ef_construct=self.hnsw_ef_construct,
            search_ef=self.search_ef,
            compile_filters=self.compile_filters,
            post_filter_min_share=self.post_filter_min_share,
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
