"""What the servicers run on: the store, the encoder, the job records and the submit hook.

Built once per server (``build_server``) and shared by every servicer, so the encoder is
loaded once and one store handle serves every thread. Each piece can be injected (tests,
the embedded single-process mode in the CLI) or opened from :class:`Settings`.

The encoder loads lazily on first use unless ``preload`` is called (``serve`` does, so the
first query is not slow): tests that never embed an expression profile never pay for it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cellsearch.jobs import INGEST_QUEUE, INGEST_TASK, JobStore
from cellsearch.settings import Settings

Submit = Callable[[str], None]
"""Enqueue ingestion job ``job_id`` for a worker; must return quickly."""


def celery_submit(redis_url: str) -> Submit:
    """Submit by task name through a bare Celery producer: services never import workers."""
    from celery import Celery

    app = Celery("cellsearch-service", broker=redis_url)
    app.conf.broker_connection_retry_on_startup = False
    app.conf.broker_transport_options = {"max_retries": 1}

    def submit(job_id: str) -> None:
        app.send_task(INGEST_TASK, args=[job_id], queue=INGEST_QUEUE)

    return submit


def open_store_from(settings: Settings) -> Any:
    """The store the settings name: a Qdrant server by URL, else the embedded engine."""
    from vectorstore import open_store

    config = settings.store_config()
    if settings.qdrant_url:
        key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        return open_store(
            url=settings.qdrant_url, api_key=key, collection=settings.collection, config=config
        )
    settings.store_path.mkdir(parents=True, exist_ok=True)
    return open_store(path=settings.store_path, collection=settings.collection, config=config)


def load_encoder_from(settings: Settings) -> Any:
    """The encoder checkpoint the settings name, else the committed default model."""
    import encoder

    if settings.model_dir is not None:
        return encoder.CellEncoder.load(settings.model_dir)
    return encoder.load_default()


@dataclass
class ServiceDeps:
    """Shared state of one server process."""

    settings: Settings
    store: Any
    jobs: JobStore
    submit: Submit
    _encoder: Any = None
    _encoder_factory: Callable[[], Any] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    owns_store: bool = False

    @property
    def encoder(self) -> Any:
        """The encoder, loaded on first use (once, under a lock)."""
        if self._encoder is None:
            with self._lock:
                if self._encoder is None:
                    factory = self._encoder_factory or (lambda: load_encoder_from(self.settings))
                    self._encoder = factory()
        return self._encoder

    def preload(self) -> None:
        """Load the encoder now instead of on the first query that needs it."""
        _ = self.encoder

    def close(self) -> None:
        if self.owns_store:
            self.store.close()


def build_deps(
    settings: Settings,
    *,
    store: Any = None,
    encoder: Any = None,
    jobs: JobStore | None = None,
    submit: Submit | None = None,
) -> ServiceDeps:
    """Open whatever was not injected from ``settings``."""
    from cellsearch.jobs import RedisJobStore

    owns = store is None
    return ServiceDeps(
        settings=settings,
        store=open_store_from(settings) if store is None else store,
        jobs=RedisJobStore(settings.redis_url) if jobs is None else jobs,
        submit=celery_submit(settings.redis_url) if submit is None else submit,
        _encoder=encoder,
        owns_store=owns,
    )
