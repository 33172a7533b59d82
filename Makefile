# alabel: two commands a new user needs — `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

# Tests run on the real servers; override for other hosts.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/alabel
TEST_BROKER_URL ?= redis://127.0.0.1:6379/0
PYTEST_ARGS ?=

.PHONY: venv test services chromium lint check demo bench clean

venv: $(STAMP)

# Re-installs only when the declared dependencies change; a second run is instant.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	@touch $(STAMP)

services:
	@bash scripts/ensure_services.sh

chromium:
	@bash scripts/ensure_chromium.sh

test: venv services chromium
	DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) \
	  $(PY) -m pytest $(PYTEST_ARGS)

check: venv
	$(PY) manage.py check
	$(PY) manage.py makemigrations --check --dry-run
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy modelsvc

# --- demo: `make demo [DATASET=rt-snippets|trec|file.csv] [TEXT_COL=.. LABEL_COL=..] [PORT=8000]` ---
# Set up idempotently (accounts, project, documents) and run web + worker + beat on SQLite and
# the filesystem broker (or DATABASE_URL / CELERY_BROKER_URL when set); Ctrl+C stops everything.
DATASET ?= rt-snippets
PORT ?= 8000
TEXT_COL ?=
LABEL_COL ?=
LABELS ?=

demo: venv
	@PY=$(PY) DATASET='$(DATASET)' TEXT_COL='$(TEXT_COL)' LABEL_COL='$(LABEL_COL)' LABELS='$(LABELS)' \
	  PORT='$(PORT)' bash scripts/demo.sh

# --- bench: service benchmarks on PostgreSQL (database alabel_bench); prints figures, asserts nothing.
# See docs/BENCHMARKS.md. BENCH_DATABASE_URL overrides the database.
bench: venv services
	$(PY) bench/ingest.py
	$(PY) bench/queue_latency.py
	$(PY) bench/rescore.py
	$(PY) bench/retrain.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
