"""Checks that stand in for `docker compose config` and `docker build` where no engine runs.

Each check takes a parsed compose document (and what it needs from the project) and returns a
list of problems, one readable sentence each, so the same function passes the real
``compose.yaml`` and is shown to fail on broken copies of it.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import importlib.util
import io
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "compose.yaml"
SCHEMA_FILE = ROOT / "deploy" / "schema" / "compose-spec.json"
ENV_PREFIX = "CELLSEARCH_"


def load_script(name: str, path: Path) -> ModuleType:
    """Import a deploy/ script (not a package module) so its functions can be tested."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def load_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    """The compose file as Compose reads it (YAML anchors and merge keys resolved)."""
    return yaml.safe_load(path.read_text())


def services(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield from (doc.get("services") or {}).items()


def built_services(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Services whose image is built from this repository (so they run our code)."""
    for name, svc in services(doc):
        if isinstance(svc, dict) and "build" in svc:
            yield name, svc


def environment(svc: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a dict, from either the mapping or the list form."""
    env = svc.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def schema_errors(doc: dict[str, Any], schema_file: Path = SCHEMA_FILE) -> list[str]:
    """Violations of the Compose specification's JSON schema, as 'path: message'."""
    schema = json.loads(schema_file.read_text())
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'/'.join(str(p) for p in err.absolute_path) or '(root)'}: {err.message}"
        for err in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.path)))
    ]


def env_problems(doc: dict[str, Any], settings_fields: set[str]) -> list[str]:
    """``CELLSEARCH_*`` variables (in any service) that are not fields of ``Settings``."""
    problems = []
    for name, svc in services(doc):
        for key in environment(svc):
            if key.startswith(ENV_PREFIX) and key[len(ENV_PREFIX) :].lower() not in settings_fields:
                problems.append(
                    f"{name}: {key} is not a Settings field (cellsearch/platform/settings.py)"
                )
    return problems


_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def interpolate(value: str) -> str:
    """A value as Compose runs it with no variables set: ``${VAR:-default}`` -> default.

    ``${VAR}`` without a default becomes the empty string, as Compose does (with a warning).
    """
    return _INTERPOLATION.sub(lambda m: m.group(2) or "", value).replace("$$", "$")


def command_problems(doc: dict[str, Any], parser: argparse.ArgumentParser) -> list[str]:
    """Commands of our services that the ``cellsearch`` CLI would refuse."""
    problems = []
    for name, svc in built_services(doc):
        command = svc.get("command")
        if not isinstance(command, list) or not command:
            problems.append(f"{name}: command must be an exec-form list, got {command!r}")
            continue
        if command[0] != "cellsearch":
            problems.append(f"{name}: command runs {command[0]!r}, not the cellsearch CLI")
            continue
        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr):
                parser.parse_args([interpolate(str(word)) for word in command[1:]])
        except SystemExit:
            reason = stderr.getvalue().strip().splitlines()[-1:] or ["rejected"]
            problems.append(f"{name}: `{' '.join(command)}` is refused by the CLI: {reason[0]}")
    return problems


def dockerfile_copy_sources(dockerfile: Path) -> list[str]:
    """Sources of ``COPY``/``ADD`` instructions that come from the build context."""
    sources = []
    for instruction in dockerfile_instructions(dockerfile):
        words = instruction.split()
        if words[0].upper() not in {"COPY", "ADD"}:
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        if any(w.startswith("--from") for w in words[1:]):
            continue
        sources.extend(args[:-1])
    return sources


def dockerfile_instructions(dockerfile: Path) -> list[str]:
    """Instructions with continuation lines joined and comments dropped."""
    joined, current = [], ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        joined.append(current + line)
        current = ""
    if current:
        joined.append(current)
    return joined


def final_stage(dockerfile: Path) -> list[str]:
    """The instructions of the last build stage (what the image ships)."""
    instructions = dockerfile_instructions(dockerfile)
    starts = [i for i, ins in enumerate(instructions) if ins.upper().startswith("FROM ")]
    return instructions[starts[-1] :] if starts else []


def dockerignore_patterns(root: Path) -> list[str]:
    path = root / ".dockerignore"
    if not path.exists():
        return []
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def build_problems(doc: dict[str, Any], root: Path = ROOT) -> list[str]:
    """Build contexts, Dockerfiles and their COPY sources that do not exist or are ignored."""
    problems = []
    ignored = dockerignore_patterns(root)
    for name, svc in built_services(doc):
        build = svc["build"]
        build = {"context": build} if isinstance(build, str) else build
        context = (root / build.get("context", ".")).resolve()
        if not context.is_dir():
            problems.append(f"{name}: build context {build.get('context')!r} is not a folder")
            continue
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        if not dockerfile.is_file():
            problems.append(f"{name}: Dockerfile {build.get('dockerfile')!r} does not exist")
            continue
        for source in dockerfile_copy_sources(dockerfile):
            if not (context / source).exists():
                problems.append(f"{name}: {dockerfile.name} copies {source!r}, which is missing")
            elif any(fnmatch.fnmatch(source.removeprefix("./"), p.strip("/")) for p in ignored):
                problems.append(f"{name}: {dockerfile.name} copies {source!r}, but .dockerignore")
        problems.extend(_healthcheck_file_problems(name, svc, dockerfile))
    return problems


def _healthcheck_file_problems(name: str, svc: dict[str, Any], dockerfile: Path) -> list[str]:
    """A health check that runs a file must run one the image actually contains."""
    test = (svc.get("healthcheck") or {}).get("test") or []
    words = test if isinstance(test, list) else test.split()
    copied = {
        ins.split()[-1] for ins in dockerfile_instructions(dockerfile) if ins.startswith("COPY")
    }
    return [
        f"{name}: health check runs {word}, which {dockerfile.name} never copies"
        for word in words
        if re.fullmatch(r"/opt/cellsearch/\S+\.py", word) and word not in copied
    ]


def dependency_problems(doc: dict[str, Any]) -> list[str]:
    """What Compose checks at `up` time and the schema cannot: references between entries."""
    problems = []
    all_services = dict(services(doc))
    declared_volumes = set((doc.get("volumes") or {}).keys())
    for name, svc in all_services.items():
        depends = svc.get("depends_on") or {}
        depends = {key: {} for key in depends} if isinstance(depends, list) else depends
        for target, spec in depends.items():
            if target not in all_services:
                problems.append(f"{name}: depends on unknown service {target!r}")
                continue
            condition = (spec or {}).get("condition", "service_started")
            if condition == "service_healthy" and "healthcheck" not in all_services[target]:
                problems.append(f"{name}: waits for {target} healthy, but it has no healthcheck")
        for volume in svc.get("volumes") or []:
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source")
            named = source and not source.startswith((".", "/", "~", "$"))
            if named and source not in declared_volumes:
                problems.append(f"{name}: volume {source!r} is not declared under volumes:")
    return problems
