#!/usr/bin/env bash
# Render both overlays with the pinned kustomize into .stack/k8s/<overlay>.yaml (make k8s-render).
#   deploy/k8s/render.sh            all overlays
#   deploy/k8s/render.sh k3s        one overlay, also printed on stdout
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="$("$ROOT/deploy/k8s/tools.sh")"
OUT="$ROOT/.stack/k8s"
mkdir -p "$OUT"
overlays=("$@")
[ ${#overlays[@]} -gt 0 ] || overlays=(k3s eks)
for overlay in "${overlays[@]}"; do
    "$BIN/kustomize" build "$ROOT/deploy/k8s/overlays/$overlay" >"$OUT/$overlay.yaml"
    echo "rendered $overlay -> .stack/k8s/$overlay.yaml ($(grep -c '^kind:' "$OUT/$overlay.yaml") objects)" >&2
    [ $# -eq 0 ] || cat "$OUT/$overlay.yaml"
done
