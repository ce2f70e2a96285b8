#!/usr/bin/env bash
# Build every service image from the repository root (make images):
#   docker build -f services/<name>/Dockerfile -t pulse/<name-with-dashes>:$TAG .
# Skips, with a message and exit 0, where no Docker engine is available (CI machines here).
#   TAG=dev (default)   REGISTRY=123456789012.dkr.ecr.eu-west-1.amazonaws.com  PUSH=1
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TAG="${TAG:-dev}"
PREFIX="${REGISTRY:+$REGISTRY/}pulse"
if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
    echo "images: no Docker engine here (docker missing or daemon unreachable); skipping the build." >&2
    echo "images: the Dockerfiles are still checked offline by tests/deploy (hadolint + image rules)." >&2
    exit 0
fi
cd "$ROOT"
built=()
for dockerfile in services/*/Dockerfile; do
    [ -e "$dockerfile" ] || continue
    service="$(basename "$(dirname "$dockerfile")")"
    image="$PREFIX/${service//_/-}:$TAG"
    echo "images: building $image" >&2
    docker build -f "$dockerfile" -t "$image" .
    built+=("$image")
    if [ "${PUSH:-0}" = "1" ]; then docker push "$image"; fi
done
printf 'images: built %s\n' "${built[@]}" >&2
