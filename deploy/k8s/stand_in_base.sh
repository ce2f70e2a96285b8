#!/usr/bin/env bash
# Build (once) a local stand-in for python:3.11-slim from Debian packages and print its name.
#
# For machines that cannot reach an image registry: `debootstrap --variant=minbase bookworm`
# (bookworm's python3 is 3.11) plus what the Dockerfiles rely on: `python` and `pip` on PATH
# (/usr/local/bin, as in python:3.11-slim), `pip install` allowed (no PEP 668 marker), passwd's
# groupadd/useradd with /usr/sbin on PATH, ca-certificates at /etc/ssl/certs. apt's lists and
# caches, docs, man pages and locales are removed. The image carries a label with the hash of
# this file: it is rebuilt only when the recipe changes. Debian packages only (DEBIAN_MIRROR).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export PULSE_IMAGES_DIR="${PULSE_IMAGES_DIR:-$ROOT/.stack/images}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
NAME="localhost/pulse-base:py311-bookworm"
# shellcheck source=deploy/k8s/buildah_env.sh
. "$ROOT/deploy/k8s/buildah_env.sh"

recipe="$(cat "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)"
if [ "$(bh inspect --type image --format '{{index .ImageAnnotations "pulse.recipe"}}' "$NAME" 2>/dev/null)" = "$recipe" ]; then
    echo "$NAME"
    exit 0
fi
ensure_apt_packages buildah debootstrap
echo "images: building the stand-in base $NAME from Debian bookworm (once; ~2 min)" >&2
mkdir -p "$PULSE_IMAGES_DIR/debs"
work="$(mktemp -d "$PULSE_IMAGES_DIR/base.XXXXXX")"
ctr=""
cleanup() {
    [ -n "$ctr" ] && bh rm "$ctr" >/dev/null 2>&1
    rm -rf "$work"
}
trap cleanup EXIT
rootfs="$work/rootfs"
debootstrap --variant=minbase --cache-dir="$PULSE_IMAGES_DIR/debs" \
    --include=passwd,python3,python3-pip,ca-certificates \
    bookworm "$rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 || {
    tail -n 30 "$work/debootstrap.log" >&2
    exit 1
}
rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
    "$rootfs"/usr/share/locale/* "$rootfs"/tmp/* "$rootfs"/debootstrap
rm -f "$rootfs"/usr/lib/python3.11/EXTERNALLY-MANAGED
ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"
ln -sf /usr/bin/pip3 "$rootfs/usr/local/bin/pip"
# debootstrap copies the host's resolv.conf/hostname in; the runtime provides its own.
: >"$rootfs/etc/resolv.conf"
: >"$rootfs/etc/hostname"

ctr="$(bh from --pull=never scratch)"
mnt="$(bh mount "$ctr")"
tar -C "$rootfs" -cf - . | tar -C "$mnt" -xpf -
bh umount "$ctr" >/dev/null
bh config \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 \
    --cmd python3 \
    --annotation "pulse.recipe=$recipe" \
    --label "org.opencontainers.image.description=Pulse stand-in for python:3.11-slim (Debian bookworm)" \
    "$ctr"
bh commit --quiet "$ctr" "$NAME" >/dev/null
echo "$NAME"
