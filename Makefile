# Developer entry points. `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

UV_VERSION := 0.13.9
UV ?= $(shell command -v uv || echo python3 -m uv)
VENV := .venv
PY := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest
SRC_DIRS := $(wildcard */src)
PREREQS := python3 -m tools.prereqs
RINGS := unit integration demo compose e2e

# $(call ring,NAME,COMMAND): checks (and, as root, installs) the ring's system prerequisites,
# runs COMMAND and prints the ring's duration. A ring whose prerequisites are missing is skipped
# with one line naming them; under CI=true that is a failure.
define ring
	@started=$$SECONDS; status=0; $(PREREQS) $(1) || status=$$?; \
	if [ $$status -eq 2 ]; then exit 0; elif [ $$status -ne 0 ]; then exit $$status; fi; \
	$(2) || status=$$?; \
	echo "== ring $(1): $$([ $$status -eq 0 ] && echo passed || echo FAILED) in $$((SECONDS - started)) s"; \
	exit $$status
endef

.PHONY: help setup install lint typecheck test test-unit test-integration demo demo-check e2e \
	bench-train bench-serving bench-pipeline bench-engine bench-hostile bench-startup bench-spark \
	bench-monitoring compose-config clean

# Every target that runs the project's environment creates it first, so each works on a fresh
# clone by itself (uv sync takes well under a second when .venv is current).
lint typecheck compose-config test-unit test-integration demo-check e2e \
	bench-train bench-serving bench-pipeline bench-engine bench-hostile bench-startup bench-spark \
	bench-monitoring: install

help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

setup: install ## Everything `make test` needs: the venv and each ring's system packages (as root)
	$(PREREQS) $(RINGS)

install: ## Create .venv with every workspace member and the dev tools, exactly as uv.lock says
	@command -v uv >/dev/null || python3 -m uv --version >/dev/null 2>&1 || \
		python3 -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV) sync --locked --all-packages --extra cpu --extra spark

lint: ## Hygiene hooks, ruff (lint + format check) and the uv.lock check, as pre-commit runs them
	SKIP=mypy $(VENV)/bin/pre-commit run --all-files --show-diff-on-failure

typecheck: ## mypy --strict on every member's src/ and on tools/
	$(VENV)/bin/mypy $(SRC_DIRS) tools

test-unit: ## Unit ring: no servers, no system packages (2-4 minutes on 2 cores)
	$(call ring,unit,$(PYTEST) -m unit)

test-integration: ## Integration ring: real PostgreSQL, mlflow server, nginx, uvicorn, S3 stand-in
	$(call ring,integration,$(PYTEST) -m integration)

test: install lint typecheck compose-config test-unit test-integration demo-check e2e ## Everything CI runs: lint, types, then every ring

demo: install ## Train the example on the embedded store, then run the MLflow UI and the API
	$(PY) -m scripts.demo

demo-check: ## The demo flow end to end, non-interactively: train, serve, predict, stop
	$(call ring,demo,$(PY) -m scripts.demo --check)

compose-config: ## Static checks of docker-compose.yml (`docker compose config`) and the Dockerfiles
	$(call ring,compose,$(PY) -m tools.e2e compose-config)

e2e: ## The compose stack end to end on a real Docker engine, `docker compose` v2, local images
	$(call ring,e2e,$(PY) -m tools.e2e run)

bench-train: ## Training time and memory: full pipeline with logging vs plain XGBoost
	$(PY) -m bench.train

bench-serving: ## Serving latency and throughput: our API vs `mlflow models serve`
	$(PY) -m bench.serving

bench-pipeline: ## One-row predict: our stored pipeline vs a plain ColumnTransformer + XGBoost
	$(PY) -m bench.pipeline

bench-engine: ## Batch inference: the engine vs pipeline.predict on 1M rows; ml-model predict on files
	$(PY) -m bench.engine

bench-hostile: ## Hostile request bodies: status, time and memory per body, valid traffic's p99
	$(PY) -m bench.hostile

bench-startup: ## Time to a target typo's error vs `import mlflow, xgboost`
	$(PY) -m bench.startup

bench-spark: ## Batch scoring: ml-model score on a Spark cluster vs spark_udf, per core vs the engine
	$(PY) -m bench.spark

bench-monitoring: ## Prediction log's cost: one-row /predict latency, log on vs off
	$(PY) -m bench.monitoring

clean: ## Remove local stores, caches and build outputs (keeps .venv)
	rm -rf .mlops mlruns mlartifacts .test-artifacts .pytest_cache .mypy_cache .ruff_cache
