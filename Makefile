# Developer entry points. `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

UV ?= uv
VENV := .venv
PY := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest
SRC_DIRS := $(wildcard */src)

.PHONY: help install lint typecheck test test-python demo demo-check e2e bench-train \
	bench-serving compose-config clean

help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

install: ## Create .venv with every workspace member and the dev tools, exactly as uv.lock says
	$(UV) sync --locked --all-packages --extra cpu

lint: ## Hygiene hooks, ruff (lint + format check) and the uv.lock check, as pre-commit runs them
	SKIP=mypy $(VENV)/bin/pre-commit run --all-files --show-diff-on-failure

typecheck: ## mypy --strict on every member's src/
	$(VENV)/bin/mypy $(SRC_DIRS)

test-python: ## Unit and integration tests (real PostgreSQL, mlflow server, nginx, uvicorn)
	$(PYTEST)

test: lint typecheck compose-config test-python demo-check e2e ## Everything CI runs

demo: install ## Train the example on the embedded store, then run the MLflow UI and the API
	$(PY) scripts/demo.py

demo-check: ## The demo flow end to end, non-interactively: train, serve, predict, stop
	$(PY) scripts/demo.py --check

compose-config: ## Validate docker-compose.yml against .env.example
	$(PY) -m tests.e2e.harness compose-config

e2e: ## Build the images locally and run the compose stack end to end on a real Docker engine
	$(PY) -m tests.e2e.harness run

bench-train: ## Training time and memory: full pipeline with logging vs plain XGBoost
	$(PY) bench/train.py

bench-serving: ## Serving latency and throughput: our API vs `mlflow models serve`
	$(PY) bench/serving.py

clean: ## Remove local stores, caches and build outputs (keeps .venv)
	rm -rf .mlops mlruns mlartifacts .pytest_cache .mypy_cache .ruff_cache
