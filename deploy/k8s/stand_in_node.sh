#!/usr/bin/env bash
# Build (once) a local stand-in for node:20-bookworm-slim from Debian packages and print its name.
#
# For machines that cannot reach an image registry: the python stand-in base
# (deploy/k8s/stand_in_base.sh, Debian bookworm) plus Debian's `nodejs` (18) and `npm` (9),
# enough for a Dockerfile's page-building stage (services/dashboard/web/build.sh: `npm ci`
# from package-lock.json, lockfileVersion 3). Only that stage's output leaves it (`COPY
# --from`), so Node never reaches a service image. apt's lists and caches, docs and man pages
# are removed. The image carries a label with the hash of this file and of the base's
# recipe: it is rebuilt only when either changes. Debian packages only.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export PULSE_IMAGES_DIR="${PULSE_IMAGES_DIR:-$ROOT/.stack/images}"
NAME="localhost/pulse-node:bookworm"
# shellcheck source=deploy/k8s/buildah_env.sh
. "$ROOT/deploy/k8s/buildah_env.sh"

base="$("$ROOT/deploy/k8s/stand_in_base.sh")"
recipe="$(cat "${BASH_SOURCE[0]}" "$ROOT/deploy/k8s/stand_in_base.sh" | sha256sum | cut -c1-16)"
if [ "$(bh inspect --type image --format '{{index .ImageAnnotations "pulse.recipe"}}' "$NAME" 2>/dev/null)" = "$recipe" ]; then
    echo "$NAME"
    exit 0
fi
echo "images: building the node stand-in $NAME from $base + Debian's nodejs and npm (once; ~1-2 min)" >&2
ctr=""
cleanup() { [ -n "$ctr" ] && bh rm "$ctr" >/dev/null 2>&1; }
trap cleanup EXIT
ctr="$(bh from --pull=never "$base")"
log="$PULSE_IMAGES_DIR/stand-in-node.log"
# The base's apt lists were removed: fetch them, install, remove them again.
bh run --isolation chroot "$ctr" -- sh -c '
    set -e
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm
    rm -rf /var/cache/apt/* /var/lib/apt/lists/* /var/log/* /usr/share/doc/* /usr/share/man/* /tmp/*
    node --version && npm --version
' >"$log" 2>&1 || {
    tail -n 30 "$log" >&2
    exit 1
}
bh config \
    --cmd node \
    --annotation "pulse.recipe=$recipe" \
    --label "org.opencontainers.image.description=Pulse stand-in for node:20-bookworm-slim (Debian bookworm's nodejs and npm)" \
    "$ctr"
bh commit --quiet "$ctr" "$NAME" >/dev/null
echo "$NAME"
