# Pulse — `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON_PREFERENCE := only-system
PY := uv run --locked
DASHBOARD_WEB := services/dashboard/web
DASHBOARD_VENDOR := $(DASHBOARD_WEB)/vendor/.built

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

.PHONY: tools
tools: ## Install uv (from PyPI) when missing
	@command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet --disable-pip-version-check "uv>=0.5"

.PHONY: sync
# --compile-bytecode: installed packages get their .pyc here (later syncs check them in
# ~0.3 s). Where PYTHONDONTWRITEBYTECODE is set, as on the CI machines, every process would
# otherwise compile its dependencies from source: ~2.4 s of imports per service or test
# subprocess instead of ~0.9 s.
sync: tools $(DASHBOARD_VENDOR) ## Create .venv from uv.lock (fails if a dependency is undeclared)
	uv sync --locked --all-packages --compile-bytecode

# The dashboard page's chart libraries: `npm ci` from web/package-lock.json (the npm registry),
# then their standalone ES modules copied into web/vendor/, which the service serves itself.
# Rebuilt only when the lock file changes.
$(DASHBOARD_VENDOR): $(DASHBOARD_WEB)/package.json $(DASHBOARD_WEB)/package-lock.json
	sh $(DASHBOARD_WEB)/build.sh
	touch $@

.PHONY: dashboard-web
dashboard-web: $(DASHBOARD_VENDOR) ## Install the dashboard page's chart libraries (npm ci) into its vendor/ dir

.PHONY: browser-tools
browser-tools: ## Install Debian's headless Chromium for the dashboard's browser tests when missing
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && (apt-get install -y -qq chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium)) ; } || echo "browser-tools: chromium missing; install it with: sudo apt-get install chromium"

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

.PHONY: migrate
migrate: sync ## Apply the ingest service's database migrations (idempotent)
	set -a && . .stack/env && set +a && $(PY) python -m ingest migrate

.PHONY: up
up: sync ## Start the stack and all services in the background (logs in .stack/logs/)
	$(PY) pulse up

.PHONY: down
down: ## Stop the services and the stack
	$(PY) pulse down

.PHONY: status
status: ## Each part and service with its health and lag
	$(PY) pulse status

.PHONY: demo
demo: sync ## The main job: run the whole pipeline on generated data and print the insights
	$(PY) pulse demo

.PHONY: lint
lint: sync ## ruff check + format check + mypy --strict
	$(PY) ruff check .
	$(PY) ruff format --check .
	$(PY) mypy libs/*/src services/*/src cli/src

.PHONY: unit
unit: sync ## Unit tests only (no stack needed)
	$(PY) pytest tests/unit -q

.PHONY: integration
integration: sync stack-up migrate bench-tools browser-tools ## Integration tests on the real stack
	$(PY) pytest tests/integration -q -m integration

.PHONY: e2e
e2e: sync stack-up migrate ## End-to-end pipeline test on the real stack
	$(PY) pytest tests/e2e -q

.PHONY: chaos
# Kills workers and restarts the stack's parts (PostgreSQL, Kafka, Connect, S3Proxy) under a
# steady review load: run it alone, on a stack nobody else is using (docs/scaling.md, "Fault
# suite"). Its fixture applies the migrations to the stack PULSE_STACK_DIR names.
chaos: sync stack-up ## Fault suite: 8 faults under load, 0 lost / 0 duplicates, recovery bounds; prints a table
	PULSE_CHAOS=1 $(PY) pytest tests/chaos -q -p no:cacheprovider -m chaos

.PHONY: k8s-tools
k8s-tools: ## Install kustomize and the schema validator used by the deploy checks
	deploy/k8s/tools.sh >/dev/null

.PHONY: monitoring-tools
monitoring-tools: ## Install promtool (Debian's prometheus package) for the alert-rule checks
	@command -v promtool >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then sudo=; \
	  elif command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; \
	  else echo "monitoring-tools: promtool is missing and this is not root: sudo apt-get install prometheus" >&2; exit 1; fi; \
	  $$sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 || \
	    { $$sudo apt-get update -qq && $$sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }; }
	@command -v promtool >/dev/null 2>&1 || { echo "monitoring-tools: could not install promtool (apt-get install prometheus)" >&2; exit 1; }

.PHONY: k8s-render
k8s-render: ## Render the k3s and eks overlays into .stack/k8s/
	deploy/k8s/render.sh

.PHONY: k8s-check
k8s-check: sync monitoring-tools ## Offline deploy checks: render, schema-validate, hadolint, settings drift, alert rules
	deploy/k8s/check.sh

.PHONY: images
# buildah (installed with apt-get when missing), overlay (else vfs) storage in .stack/images;
# where no image registry is reachable, a stand-in python:3.11-slim is built from Debian
# packages first (cached). ENGINE=docker uses a Docker engine instead. docs/deploy.md has sizes and times.
images: ## Build every service image (services/*/Dockerfile) with buildah
	deploy/k8s/build_images.sh

.PHONY: bench
bench: sync stack-up migrate bench-tools ## Every benchmark, one table of figure/baseline/ratio/target (QUICK=1 for a smoke run)
	$(PY) python bench/run_all.py $(if $(QUICK),--quick,)

.PHONY: bench-tools
# wrk drives the ingest benchmark and its smoke test (tests/integration/ingest), so `test` and
# `bench` both need it: installed from Debian as root (or with sudo), else a clear stop here
# rather than a skipped test or a benchmark that dies half-way.
bench-tools: ## Install wrk (Debian) for the HTTP benchmark and its test when missing
	@command -v wrk >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then sudo=; \
	  elif command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; \
	  else echo "bench-tools: wrk is missing and this is not root: sudo apt-get install wrk" >&2; exit 1; fi; \
	  $$sudo apt-get install -y -qq wrk >/dev/null 2>&1 || \
	    { $$sudo apt-get update -qq && $$sudo apt-get install -y -qq wrk >/dev/null; }; }
	@command -v wrk >/dev/null 2>&1 || { echo "bench-tools: could not install wrk (apt-get install wrk)" >&2; exit 1; }

.PHONY: test
test: sync stack-up migrate k8s-tools bench-tools monitoring-tools browser-tools images ## Everything CI runs: lint and every test tier on the real stack
	$(PY) ruff check .
	$(PY) ruff format --check .
	$(PY) mypy libs/*/src services/*/src cli/src
	$(PY) pytest -q -p no:cacheprovider

.PHONY: clean
clean: ## Remove caches (not .stack/)
	rm -rf .pytest_cache .mypy_cache .ruff_cache
