from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from cellsearch.settings import Settings


def test_environment_prefix_sets_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELLSEARCH_QDRANT_URL", "http://qdrant:6334")
    monkeypatch.setenv("CELLSEARCH_MAX_K", "500")
    monkeypatch.setenv("CELLSEARCH_ALLOWED_ROOTS", '["/data/a", "/data/b"]')
    settings = Settings()
    assert settings.store_mode == "server"
    assert settings.max_k == 500
    assert settings.allowed_roots == (Path("/data/a"), Path("/data/b"))


def test_default_is_embedded_store() -> None:
    assert Settings().store_mode == "embedded"


def test_tls_files_must_come_in_pairs(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="must be set together"):
        Settings(tls_cert_file=tmp_path / "cert.pem")


def test_limits_are_validated() -> None:
    with pytest.raises(ValidationError):
        Settings(max_k=0)
