#!/usr/bin/env bash
# Every offline deployment check (make k8s-check): render + schema validation, manifest rules,
# hadolint and image rules on services/*/Dockerfile, settings drift, generated files current.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
deploy/k8s/tools.sh >/dev/null
exec uv run --locked pytest tests/deploy -q "$@"
