# Sourced by build_images.sh and stand_in_base.sh: one buildah storage for the project, under
# $PULSE_IMAGES_DIR (.stack/images), not the repo. `--isolation chroot` (per build) needs no
# user namespaces.
#
# Storage driver (PULSE_IMAGES_DRIVER): `overlay` where the kernel has overlayfs, else `vfs`.
# vfs needs nothing from the kernel but stores each layer, and each working container, as a
# full copy: measured here (2 cores, load ~10) a fully cached build of one image took
# 80-190 s with vfs, as every stage's container is a copy of its image.
# shellcheck shell=bash

if [ -z "${PULSE_IMAGES_DRIVER:-}" ]; then
    if grep -qw overlay /proc/filesystems 2>/dev/null; then
        PULSE_IMAGES_DRIVER=overlay
    else
        PULSE_IMAGES_DRIVER=vfs
    fi
fi
export PULSE_IMAGES_DRIVER

bh() {
    buildah --root "$PULSE_IMAGES_DIR/storage-$PULSE_IMAGES_DRIVER" \
        --runroot "$PULSE_IMAGES_DIR/run-$PULSE_IMAGES_DRIVER" \
        --storage-driver "$PULSE_IMAGES_DRIVER" "$@"
}

# The image's size in bytes: the sum of its layers (uncompressed tars) from its manifest.
image_size_bytes() {
    bh inspect --type image "$1" | python3 -c 'import json, sys
print(sum(layer["size"] for layer in json.loads(json.load(sys.stdin)["Manifest"])["layers"]))'
}

# Install Debian packages whose command is missing (CI may run on a fresh machine).
#   ensure_apt_packages buildah debootstrap
ensure_apt_packages() {
    local missing=() package
    for package in "$@"; do
        command -v "$package" >/dev/null 2>&1 || missing+=("$package")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ]; then
        echo "images: missing ${missing[*]}; install with: sudo apt-get install ${missing[*]}" >&2
        return 1
    fi
    echo "images: apt-get install ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 || {
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    }
}
