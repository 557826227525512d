"""compose.yaml is valid Compose, runs real CLI commands and sets only real settings.

No Docker engine runs here, so these tests do what `docker compose config` would (the
Compose specification's JSON schema, references between entries) plus what only this project
can know: each service command parses with the real ``cellsearch`` CLI, each ``CELLSEARCH_``
variable is a ``Settings`` field and its value loads, each build path exists. The broken-copy
tests show every check fails when the file is wrong.
"""

from __future__ import annotations

import copy
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from deploy_checks import (
    ENV_PREFIX,
    SCHEMA_FILE,
    build_problems,
    built_services,
    command_problems,
    dependency_problems,
    env_problems,
    environment,
    interpolate,
    load_compose,
    schema_errors,
)

from cellsearch.platform.settings import Settings

SCHEMA_SHA256 = "1f91e091f16b2dd50ab8860e02bb391d22df553d91c145eacedb1b6eff9c3f0e"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def parser():
    from cellsearch.app.cli import build_parser

    return build_parser()


@pytest.fixture
def broken(compose) -> dict[str, Any]:
    """A deep copy of compose.yaml to break, so the module's copy stays intact."""
    return copy.deepcopy(compose)


def settings_fields() -> set[str]:
    return set(Settings.model_fields)


# --- the real file passes every check ---------------------------------------------------------


def test_vendored_schema_is_the_recorded_upstream_file():
    digest = hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest()
    assert digest == SCHEMA_SHA256, "deploy/schema/compose-spec.json changed: update its README"
    assert SCHEMA_SHA256 in (SCHEMA_FILE.parent / "README.md").read_text()


def test_compose_file_matches_the_compose_specification(compose):
    assert schema_errors(compose) == []


def test_every_cellsearch_variable_is_a_settings_field(compose):
    names = {k for _, svc in built_services(compose) for k in environment(svc)}
    assert {"CELLSEARCH_QDRANT_URL", "CELLSEARCH_REDIS_URL", "CELLSEARCH_ALLOWED_ROOTS"} <= names
    assert env_problems(compose, settings_fields()) == []


def test_every_service_command_parses_with_the_cli(compose, parser):
    assert command_problems(compose, parser) == []


def test_build_contexts_dockerfiles_and_copied_paths_exist(compose):
    assert build_problems(compose) == []


def test_dependencies_and_volumes_resolve(compose):
    assert dependency_problems(compose) == []


@pytest.mark.parametrize("service", ["worker", "search"])
def test_service_environment_loads_as_scale_mode_settings(compose, service, monkeypatch, tmp_path):
    """The values, not just the names: pydantic parses them exactly as in the container."""
    for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(key)
    for key, value in environment(compose["services"][service]).items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)  # no stray .env file
    settings = Settings()
    assert settings.store_mode == "server"
    assert settings.qdrant_url == "http://qdrant:6333"
    assert settings.redis_url.startswith("redis://redis:6379/")
    assert settings.allowed_roots == (Path("/data/inbox"),)
    if service == "search":
        assert settings.grpc_address.endswith(":50051")
        assert settings.grpc_address.startswith("0.0.0.0:")
    else:
        assert settings.device == "cuda"


def test_ingestion_inbox_is_mounted_where_allowed_roots_point(compose):
    for name in ("worker", "search"):
        svc = compose["services"][name]
        assert "inbox:/data/inbox:ro" in svc["volumes"], name
        assert environment(svc)["CELLSEARCH_ALLOWED_ROOTS"] == '["/data/inbox"]'
    assert "inbox" in compose["volumes"]


def test_worker_reserves_a_gpu_and_can_be_scaled(compose):
    worker = compose["services"]["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    # --scale worker=N needs replicas that do not collide: no fixed name, no host port.
    assert "container_name" not in worker
    assert "ports" not in worker


def test_backends_are_pinned_persistent_and_health_checked(compose):
    svcs = compose["services"]
    for name in ("qdrant", "redis"):
        image = svcs[name]["image"]
        tag = image.rsplit(":", 1)[-1]
        assert ":" in image and tag != "latest" and any(c.isdigit() for c in tag), image
        assert "healthcheck" in svcs[name]
    assert "qdrant-data:/qdrant/storage" in svcs["qdrant"]["volumes"]
    assert "redis-data:/data" in svcs["redis"]["volumes"]
    assert svcs["redis"]["command"][svcs["redis"]["command"].index("--appendonly") + 1] == "yes"
    assert "/readyz" in svcs["qdrant"]["healthcheck"]["test"][-1]
    assert "/opt/cellsearch/healthcheck.py" in svcs["search"]["healthcheck"]["test"]


# --- broken copies fail, each with the reason named -------------------------------------------


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (lambda d: d["services"]["search"].update(helthcheck={}), "helthcheck"),
        (
            lambda d: d["services"]["worker"]["depends_on"]["qdrant"].update(
                condition="service_ready"
            ),
            "service_ready",
        ),
        (lambda d: d["services"]["redis"].update(restart=["always"]), "restart"),
        (
            lambda d: d["services"]["worker"]["deploy"]["resources"]["reservations"]["devices"][
                0
            ].pop("capabilities"),
            "capabilities",
        ),
        (lambda d: d.update(volumes=["qdrant-data"]), "volumes"),
        (lambda d: d["services"]["qdrant"].update(ports={"6333": 6333}), "ports"),
    ],
    ids=[
        "misspelt-key",
        "bad-condition",
        "wrong-type",
        "gpu-no-capabilities",
        "volumes-list",
        "ports-map",
    ],
)
def test_schema_rejects_a_broken_compose_file(broken, breakage, expected):
    breakage(broken)
    errors = schema_errors(broken)
    assert errors, "the schema accepted a broken compose file"
    assert any(expected in e for e in errors), errors


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("${WORKER_CONCURRENCY:-1}", "1"),
        ("${WORKER_CONCURRENCY-2}", "2"),
        ("${WORKER_CONCURRENCY}", ""),
        ("a$$b", "a$b"),
        ("plain", "plain"),
    ],
)
def test_interpolation_uses_compose_defaults(value, expected):
    assert interpolate(value) == expected


def test_interpolated_command_without_a_default_is_reported(broken, parser):
    broken["services"]["worker"]["command"] = ["cellsearch", "worker", "--concurrency", "${N}"]
    problems = command_problems(broken, parser)
    assert len(problems) == 1
    assert problems[0].startswith("worker: ")


def test_unknown_setting_is_reported(broken):
    broken["services"]["worker"]["environment"]["CELLSEARCH_QDRANT_ADDR"] = "http://qdrant:6333"
    problems = env_problems(broken, settings_fields())
    assert problems == [
        "worker: CELLSEARCH_QDRANT_ADDR is not a Settings field (cellsearch/platform/settings.py)"
    ]


@pytest.mark.parametrize(
    "command",
    [
        ["cellsearch", "servee"],
        ["cellsearch", "worker", "--concurency", "1"],
        ["celery", "-A", "workers.app", "worker"],
        "cellsearch serve",
    ],
)
def test_command_the_cli_refuses_is_reported(broken, parser, command):
    broken["services"]["search"]["command"] = command
    problems = command_problems(broken, parser)
    assert len(problems) == 1
    assert problems[0].startswith("search: ")


def test_missing_dockerfile_and_context_are_reported(broken):
    broken["services"]["worker"]["build"]["dockerfile"] = "deploy/gpu.Dockerfile"
    broken["services"]["search"]["build"]["context"] = "./nowhere"
    problems = build_problems(broken)
    assert "worker: Dockerfile 'deploy/gpu.Dockerfile' does not exist" in problems
    assert "search: build context './nowhere' is not a folder" in problems


def test_copy_of_a_missing_or_ignored_path_is_reported(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "docs").mkdir()
    (tmp_path / ".dockerignore").write_text("docs\n")
    (tmp_path / "Dockerfile").write_text(
        "FROM python:3.11.13-slim\nCOPY app ./app\nCOPY lib ./lib\nCOPY docs ./docs\n"
    )
    doc = {"services": {"svc": {"build": {"context": "."}, "command": ["cellsearch"]}}}
    problems = build_problems(doc, root=tmp_path)
    assert problems == [
        "svc: Dockerfile copies 'lib', which is missing",
        "svc: Dockerfile copies 'docs', but .dockerignore",
    ]


def test_health_check_of_a_file_the_image_lacks_is_reported(broken):
    broken["services"]["search"]["healthcheck"]["test"] = ["CMD", "python", "/opt/cellsearch/x.py"]
    assert build_problems(broken) == [
        "search: health check runs /opt/cellsearch/x.py, which Dockerfile never copies"
    ]


def test_dangling_dependency_and_undeclared_volume_are_reported(broken):
    broken["services"]["flower"]["depends_on"] = {"rabbitmq": {"condition": "service_healthy"}}
    del broken["services"]["search"]["healthcheck"]
    broken["services"]["flower"]["depends_on"]["search"] = {"condition": "service_healthy"}
    broken["services"]["worker"]["volumes"].append("models:/models:ro")
    assert sorted(dependency_problems(broken)) == [
        "flower: depends on unknown service 'rabbitmq'",
        "flower: waits for search healthy, but it has no healthcheck",
        "worker: volume 'models' is not declared under volumes:",
    ]
