# The two commands a fresh machine needs: `make up` (the whole system) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup up down status browser test test-unit lint k8s-check images compose-test bench demo triage-demo train gpu-kit clean

# kustomize for `make k8s-check`, built from its Go module at a pinned version into the venv (about a minute the
# first time; make test only runs it).
KUSTOMIZE_VERSION := v5.7.1
KUSTOMIZE := $(BIN)/kustomize
KUSTOMIZE_STAMP := $(VENV)/.kustomize-$(KUSTOMIZE_VERSION)

setup: $(STAMP) $(KUSTOMIZE_STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[model,dev]'
	touch $(STAMP)

$(KUSTOMIZE_STAMP): | $(STAMP)
	GOBIN=$(abspath $(BIN)) go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)
	touch $(KUSTOMIZE_STAMP)

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

# Render every k8s overlay with kustomize, validate the objects (Kubernetes 1.31 schemas, custom resources against
# the CRDs vendored in k8s/crds/) and cross-check them with the services' settings, routes, ports and topics
# (tools/k8s_check.py).
# docker-compose.yml too: its variables, images, settings, health checks and ports (tools/compose_check.py).
k8s-check: setup
	$(BIN)/python -m tools.k8s_topics --check
	$(BIN)/python -m tools.k8s_check
	$(BIN)/python -m tools.compose_check

# Every image of the Dockerfile, with podman and a base image made from Debian's packages (no image registry is
# reachable here; infra/podman/images.sh says what this machine needs). Needs root, podman, debootstrap, runc.
images:
	infra/podman/images.sh

# The compose stack from those images: a ticket from intake to a verified webhook on this host, a clean stop,
# then down -v and the images removed (tools/compose_test.py; CI runs it as a phase of its own).
compose-test: setup
	$(BIN)/python -m tools.compose_test

# The console's browser test needs Debian's chromium and chromium-driver.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver)

# The platform (broker, Redis, registry) starts once per run; test files run side by side in TEST_WORKERS
# processes (one file per worker at a time, the e2e tests that share a stack together); the 25 slowest are listed.
TEST_WORKERS ?= 3
test: lint k8s-check browser
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadscope --durations=25

bench: up
	$(BIN)/python -m loadtest.bench_runtime
	$(BIN)/python -m loadtest.bench_pipeline
	$(BIN)/python -m loadtest.bench_intake
	$(BIN)/python -m loadtest.bench_enrichment
	$(BIN)/python -m loadtest.bench_text
	$(BIN)/python -m loadtest.bench_state
	$(BIN)/python -m loadtest.bench_restore
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
