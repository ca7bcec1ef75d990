# The two commands a fresh machine needs: `make up` (the whole system) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup up down status browser test test-unit lint bench demo triage-demo train gpu-kit clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

up: setup
	$(BIN)/pipeline up

down: setup
	$(BIN)/pipeline down

status: setup
	$(BIN)/pipeline status

lint: setup
	$(BIN)/ruff check shared services stack tests loadtest tools
	$(BIN)/ruff format --check shared services stack tests loadtest tools
	$(BIN)/mypy

test-unit: setup
	$(BIN)/pytest tests/unit -q

# The console's browser test needs Debian's chromium and chromium-driver.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver)

# The platform (broker, Redis, registry) starts once per run; test files run side by side in TEST_WORKERS
# processes (one file per worker at a time, the e2e tests that share a stack together); the 25 slowest are listed.
TEST_WORKERS ?= 3
test: lint browser
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadscope --durations=25

bench: up
	$(BIN)/python -m loadtest.bench_runtime
	$(BIN)/python -m loadtest.bench_pipeline
	$(BIN)/python -m loadtest.bench_intake
	$(BIN)/python -m loadtest.bench_enrichment
	$(BIN)/python -m loadtest.bench_serde
	$(BIN)/python -m loadtest.bench_model
	$(BIN)/python -m loadtest.bench_inference --plot-copy docs/bench
	$(BIN)/python -m loadtest.bench_notifier
	$(BIN)/python -m loadtest.bench_replay
	$(BIN)/python -m loadtest.broker_start

demo: up
	$(BIN)/pipeline demo

# A dozen tickets through intake, enrichment and inference; prints each result as a table.
triage-demo: up
	$(BIN)/pipeline triage-demo

# The triage heads: rebuild the training tickets, train on them, write heads.safetensors and REPORT.md.
train: setup
	$(BIN)/python -m tools.training.generate
	$(BIN)/python -m tools.training.train

# What the GPU check (tools/gpu_check.py) carries to a GPU machine: .gpu-kit/ and .whl/ (git-ignored).
gpu-kit: setup
	$(BIN)/python -m tools.gpu_check kit

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
