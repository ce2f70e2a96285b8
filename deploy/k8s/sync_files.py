#!/usr/bin/env python3
"""Copy the files kustomize must read from outside deploy/k8s/ into it, byte for byte.

`kubectl apply -k` refuses files outside a kustomization's root (and cannot be given
`--load-restrictor LoadRestrictionsNone`), so the nginx configuration owned by deploy/nginx/
and the connector configuration owned by deploy/debezium/ are mirrored here. The sources stay
the single place to edit; `--check` (run by tests/deploy) fails when a copy has drifted.

    python3 deploy/k8s/sync_files.py          # refresh the copies
    python3 deploy/k8s/sync_files.py --check  # exit 1 and name the stale copies
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"

# source (repo-relative) -> copy (repo-relative)
COPIES: dict[str, str] = {
    "deploy/nginx/nginx.conf": "deploy/k8s/base/nginx/conf/nginx.conf",
    "deploy/nginx/env/k8s/listen.conf": "deploy/k8s/base/nginx/conf/listen.conf",
    "deploy/nginx/env/k8s/upstream-ingest.conf": "deploy/k8s/base/nginx/conf/upstream-ingest.conf",
    "deploy/nginx/env/k8s/upstream-query.conf": "deploy/k8s/base/nginx/conf/upstream-query.conf",
    "deploy/nginx/env/k8s/upstream-notifier.conf": (
        "deploy/k8s/base/nginx/conf/upstream-notifier.conf"
    ),
    "deploy/nginx/env/k8s/upstream-dashboard.conf": (
        "deploy/k8s/base/nginx/conf/upstream-dashboard.conf"
    ),
    "deploy/debezium/pulse-postgres.json": "deploy/k8s/components/debezium/pulse-postgres.json",
}


def stale() -> list[str]:
    out = []
    for src, dst in COPIES.items():
        source, copy = REPO / src, REPO / dst
        if not copy.exists() or copy.read_bytes() != source.read_bytes():
            out.append(f"{dst} differs from {src}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a copy is stale")
    args = parser.parse_args()
    if args.check:
        problems = stale()
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print("fix: python3 deploy/k8s/sync_files.py", file=sys.stderr)
        return 1 if problems else 0
    for src, dst in COPIES.items():
        copy = REPO / dst
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes((REPO / src).read_bytes())
        print(f"{src} -> {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
