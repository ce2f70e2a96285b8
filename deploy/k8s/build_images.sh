#!/usr/bin/env bash
# Build every service image from services/*/Dockerfile (make images), from the repository root.
#
# Default engine: Debian's buildah (no daemon; `--isolation chroot`, overlay or vfs storage under
# .stack/images/), installed with apt-get when missing. On a machine that cannot reach an image
# registry (BASE_IMAGE unset), a stand-in for python:3.11-slim is built first from Debian
# packages (deploy/k8s/stand_in_base.sh; cached, built once). Where outbound HTTPS goes through
# a proxy with its own CA, the host's CA bundle reaches the build's RUN steps as the secret
# `ca_bundle` (mounted over the image's bundle for that step only, never stored in a layer).
#
#   SERVICES="ingest query"   only these (default: every services/*/Dockerfile)
#   SERVICES_ROOT=services    where <service>/Dockerfile is found (the context stays the repo)
#   TAG=dev                   image tag (pulse/<name-with-dashes>:$TAG)
#   BASE_IMAGE=python:3.11-slim   use a registry base instead of the stand-in
#   NODE_IMAGE=node:20-bookworm-slim   the same for a page-building node stage (dashboard);
#                             without BASE_IMAGE a stand-in is built (deploy/k8s/stand_in_node.sh)
#   CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt   the host bundle passed as the secret
#   REGISTRY=… PUSH=1         name the images <registry>/pulse/… and push each after building
#   ENGINE=docker             `docker build` instead of buildah
#   PULSE_IMAGES_DIR=.stack/images   buildah storage, the stand-in's cache, build-times.tsv
#
# Each failure names the service and the step (base, build, inspect) and exits non-zero.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TAG="${TAG:-dev}"
PREFIX="${REGISTRY:+$REGISTRY/}pulse"
ENGINE="${ENGINE:-buildah}"
CA_BUNDLE="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
SERVICES_ROOT="${SERVICES_ROOT:-services}"
export PULSE_IMAGES_DIR="${PULSE_IMAGES_DIR:-$ROOT/.stack/images}"
cd "$ROOT"

log() { echo "images: $*" >&2; }
fail() { log "FAILED: $*"; exit 1; }

services=()
if [ -n "${SERVICES:-}" ]; then
    read -r -a services <<<"$SERVICES"
else
    for dockerfile in "$SERVICES_ROOT"/*/Dockerfile; do
        [ -e "$dockerfile" ] && services+=("$(basename "$(dirname "$dockerfile")")")
    done
fi
[ "${#services[@]}" -gt 0 ] || fail "no $SERVICES_ROOT/*/Dockerfile found"

secret_args=()
if [ -s "$CA_BUNDLE" ]; then
    secret_args=(--secret "id=ca_bundle,src=$CA_BUNDLE")
fi

if [ "$ENGINE" = docker ]; then
    for service in "${services[@]}"; do
        image="$PREFIX/${service//_/-}:$TAG"
        log "$service: docker build -> $image"
        DOCKER_BUILDKIT=1 docker build "${secret_args[@]}" \
            ${BASE_IMAGE:+--build-arg "BASE_IMAGE=$BASE_IMAGE"} \
            ${NODE_IMAGE:+--build-arg "NODE_IMAGE=$NODE_IMAGE"} \
            -f "$SERVICES_ROOT/$service/Dockerfile" -t "$image" . || fail "$service: step build"
        if [ "${PUSH:-0}" = "1" ]; then docker push "$image" || fail "$service: step push"; fi
    done
    exit 0
fi

# --- buildah ---------------------------------------------------------------------------------
# shellcheck source=deploy/k8s/buildah_env.sh
. "$ROOT/deploy/k8s/buildah_env.sh"
ensure_apt_packages buildah || fail "buildah missing (apt-get install buildah)"
mkdir -p "$PULSE_IMAGES_DIR"
# One build at a time per storage directory (make images and the tests may overlap).
exec 8>"$PULSE_IMAGES_DIR/.build.lock"
flock -w 3600 8

# An interrupted build leaves its working containers (each a full copy under vfs): no build
# runs now (the lock), so remove them. The tests' own containers have other names.
for leftover in $(bh containers --format '{{.ContainerName}}' | grep -- '-working-container'); do
    bh rm "$leftover" >/dev/null || true
done

# vfs stores every layer as a full copy and each code change leaves the previous layers
# behind: past PULSE_IMAGES_MAX_GB (default 40) drop every unnamed image, cache included.
used_gb="$(du -s --block-size=1G "$PULSE_IMAGES_DIR/storage-$PULSE_IMAGES_DRIVER" 2>/dev/null | cut -f1 || echo 0)"
if [ "${used_gb:-0}" -gt "${PULSE_IMAGES_MAX_GB:-40}" ]; then
    log "storage holds ${used_gb} GB (> ${PULSE_IMAGES_MAX_GB:-40}): pruning unnamed images and the layer cache"
    bh rmi --prune >/dev/null || true
fi

# A registry-less machine gets stand-ins: the python base always, the node one (a page's
# build stage) only when a Dockerfile being built takes NODE_IMAGE.
if [ -z "${BASE_IMAGE:-}" ]; then
    BASE_IMAGE="$("$ROOT/deploy/k8s/stand_in_base.sh")" || fail "base: step stand-in base"
    for service in "${services[@]}"; do
        if [ -z "${NODE_IMAGE:-}" ] && grep -qs 'NODE_IMAGE' "$SERVICES_ROOT/$service/Dockerfile"; then
            NODE_IMAGE="$("$ROOT/deploy/k8s/stand_in_node.sh")" || fail "base: step node stand-in"
        fi
    done
fi
log "base image: $BASE_IMAGE${NODE_IMAGE:+, node image: $NODE_IMAGE}; storage: $PULSE_IMAGES_DRIVER in $PULSE_IMAGES_DIR"

times="$PULSE_IMAGES_DIR/build-times.tsv"
for service in "${services[@]}"; do
    image="$PREFIX/${service//_/-}:$TAG"
    dockerfile="$SERVICES_ROOT/$service/Dockerfile"
    [ -f "$dockerfile" ] || fail "$service: step build (no $dockerfile)"
    log "$service: building $image"
    node_args=()
    if [ -n "${NODE_IMAGE:-}" ] && grep -qs 'NODE_IMAGE' "$dockerfile"; then
        node_args=(--build-arg "NODE_IMAGE=$NODE_IMAGE")
    fi
    start="$(date +%s.%N)"
    if ! bh bud --layers --isolation chroot --pull=never --format docker \
        --build-arg "BASE_IMAGE=$BASE_IMAGE" "${node_args[@]}" "${secret_args[@]}" \
        -f "$dockerfile" -t "$image" . >"$PULSE_IMAGES_DIR/build-$service.log" 2>&1; then
        tail -n 40 "$PULSE_IMAGES_DIR/build-$service.log" >&2
        fail "$service: step build ($dockerfile; full log $PULSE_IMAGES_DIR/build-$service.log)"
    fi
    end="$(date +%s.%N)"
    seconds="$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')"
    size="$(image_size_bytes "$image")" || fail "$service: step inspect"
    log "$service: built $image in ${seconds} s"
    if [ "${PUSH:-0}" = "1" ]; then bh push "$image" "docker://$image" || fail "$service: step push"; fi
    printf '%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$service" "$image" "$seconds" "$size" >>"$times"
done
log "built ${services[*]}"
