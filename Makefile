# Pulse — `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON_PREFERENCE := only-system
PY := uv run --locked

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

.PHONY: tools
tools: ## Install uv (from PyPI) when missing
	@command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet --disable-pip-version-check "uv>=0.5"

.PHONY: sync
sync: tools ## Create .venv from uv.lock (fails if a dependency is undeclared)
	uv sync --locked --all-packages

.PHONY: lock
lock: tools ## Re-resolve uv.lock after changing dependencies
	uv lock

.PHONY: stack-up
stack-up: ## Install (if missing) and start PostgreSQL, Kafka, Connect+Debezium, S3Proxy, nginx
	python3 deploy/local/stack.py up

.PHONY: stack-down
stack-down: ## Stop the local stack (drops the replication slot; data is kept)
	python3 deploy/local/stack.py down

.PHONY: stack-status
stack-status: ## Show each part of the stack and its address
	python3 deploy/local/stack.py status

.PHONY: stack-logs
stack-logs: ## Tail the stack's logs
	python3 deploy/local/stack.py logs

.PHONY: lint
lint: sync ## ruff check + format check + mypy --strict
	$(PY) ruff check .
	$(PY) ruff format --check .
	$(PY) mypy libs/*/src services/*/src

.PHONY: unit
unit: sync ## Unit tests only (no stack needed)
	$(PY) pytest tests/unit -q

.PHONY: test
test: sync stack-up ## Everything CI runs: lint, unit, integration and e2e tests on the real stack
	$(PY) ruff check .
	$(PY) pytest -q

.PHONY: clean
clean: ## Remove caches (not .stack/)
	rm -rf .pytest_cache .mypy_cache .ruff_cache
