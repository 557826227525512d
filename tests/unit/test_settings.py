from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from cellsearch.platform.settings import Settings


def test_environment_prefix_sets_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELLSEARCH_QDRANT_URL", "http://qdrant:6334")
    monkeypatch.setenv("CELLSEARCH_MAX_K", "500")
    monkeypatch.setenv("CELLSEARCH_ALLOWED_ROOTS", '["/data/a", "/data/b"]')
    settings = Settings()
    assert settings.store_mode == "server"
    assert settings.max_k == 500
    assert settings.allowed_roots == (Path("/data/a"), Path("/data/b"))


@pytest.mark.parametrize(
    ("value", "roots"),
    [
        ("/data/inbox", ("/data/inbox",)),
        ("/data/a:/data/b", ("/data/a", "/data/b")),
        ('["/data/a"]', ("/data/a",)),
    ],
)
def test_allowed_roots_read_as_a_shell_user_writes_them(
    monkeypatch: pytest.MonkeyPatch, value: str, roots: tuple[str, ...]
) -> None:
    monkeypatch.setenv("CELLSEARCH_ALLOWED_ROOTS", value)
    assert Settings().allowed_roots == tuple(Path(r) for r in roots)


def test_default_is_embedded_store() -> None:
    assert Settings().store_mode == "embedded"


def test_tls_files_must_come_in_pairs(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="must be set together"):
        Settings(tls_cert_file=tmp_path / "cert.pem")


def test_limits_are_validated() -> None:
    with pytest.raises(ValidationError):
        Settings(max_k=0)


def test_store_config_carries_the_search_knobs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELLSEARCH_SEARCH_EF", "1536")
    monkeypatch.setenv("CELLSEARCH_POST_FILTER_MIN_SHARE", "0.3")
    monkeypatch.setenv("CELLSEARCH_COMPILE_FILTERS", "false")
    cfg = Settings().store_config()
    assert (cfg.search_ef, cfg.post_filter_min_share, cfg.compile_filters) == (1536, 0.3, False)
    monkeypatch.delenv("CELLSEARCH_POST_FILTER_MIN_SHARE")
    assert Settings().store_config().post_filter_min_share is None  # off unless asked for
    with pytest.raises(ValidationError):
        Settings(post_filter_min_share=1.5)


def test_store_defaults_are_the_store_configs_own() -> None:
    """The settings restate StoreConfig's defaults (no import of the engine at load time);
    they must not drift apart, or the service would search with other knobs than measured."""
    from vectorstore import StoreConfig

    assert Settings().store_config() == StoreConfig()


def test_the_jobs_namespace_belongs_to_one_store(tmp_path: Path) -> None:
    """A store made again at the same path is a new store: it must not inherit the old one's
    dataset registry (its ingestion would be refused with ALREADY_EXISTS)."""
    import shutil

    first = Settings(store_path=tmp_path / "store")
    name = first.jobs_namespace
    assert name == Settings(store_path=tmp_path / "store").jobs_namespace  # stable
    assert name != Settings(store_path=tmp_path / "other").jobs_namespace
    shutil.rmtree(tmp_path / "store")
    assert Settings(store_path=tmp_path / "store").jobs_namespace != name
    assert Settings(store_path=tmp_path / "store", namespace="mine").jobs_namespace == "mine"
    served = Settings(qdrant_url="http://qdrant:6333/", collection="cells").jobs_namespace
    assert served == Settings(qdrant_url="http://qdrant:6333").jobs_namespace
