"""What the servicers run on: the store, the encoder, the job records and the submit hook.

Built once per server (``build_server``) and shared by every servicer, so the encoder is
loaded once and one store handle serves every thread. Each piece can be injected (tests,
the embedded platform) or opened from :class:`Settings` through the platform's factories.

The encoder loads lazily on first use unless ``preload`` is called (``serve`` does, so the
first query is not slow): tests that never embed an expression profile never pay for it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cellsearch.platform.factories import load_encoder, open_store
from cellsearch.platform.jobs import JobStore, RedisJobStore
from cellsearch.platform.settings import Settings
from cellsearch.platform.submit import Enqueue, celery_enqueue

if TYPE_CHECKING:
    from encoder import CellEncoder
    from vectorstore import CellStore


@dataclass
class ServiceDeps:
    """Shared state of one server process."""

    settings: Settings
    store: CellStore
    jobs: JobStore
    submit: Enqueue
    owns_store: bool = False
    _encoder: CellEncoder | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def encoder(self) -> CellEncoder:
        """The encoder, loaded on first use (once, under a lock)."""
        if self._encoder is None:
            with self._lock:
                if self._encoder is None:
                    self._encoder = load_encoder(self.settings)
        return self._encoder

    @property
    def loaded_model_version(self) -> str:
        """The model version if the encoder is loaded, else "" (never loads it)."""
        return self._encoder.model_version if self._encoder is not None else ""

    def preload(self) -> None:
        """Load the encoder now instead of on the first query that needs it."""
        _ = self.encoder

    def close(self) -> None:
        if self.owns_store:
            self.store.close()


def build_deps(
    settings: Settings,
    *,
    store: CellStore | None = None,
    encoder: CellEncoder | None = None,
    jobs: JobStore | None = None,
    submit: Enqueue | None = None,
) -> ServiceDeps:
    """Open whatever was not injected from ``settings``."""
    return ServiceDeps(
        settings=settings,
        store=open_store(settings) if store is None else store,
        jobs=RedisJobStore.for_settings(settings) if jobs is None else jobs,
        submit=(
            celery_enqueue(settings.redis_url, settings.jobs_namespace)
            if submit is None
            else submit
        ),
        owns_store=store is None,
        _encoder=encoder,
    )
