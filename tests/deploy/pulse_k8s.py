"""Shared by the deployment checks: repository paths, kustomize, and rendered-object lookups."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("k3s", "eks")


def kustomize_build(tools: Path, path: Path) -> str:
    result = subprocess.run(
        [str(tools / "kustomize"), "build", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"kustomize build {path} failed:\n{result.stderr}"
    return result.stdout


def build_with_component(tools: Path, tmp_path: Path, component: str) -> list[dict[str, Any]]:
    """The k3s overlay's objects with the opt-in `components/<component>` added (on a copy of
    deploy/k8s in `tmp_path`)."""
    import shutil

    import yaml

    tree = tmp_path / "k8s"
    shutil.copytree(K8S, tree, ignore=shutil.ignore_patterns("__pycache__"))
    overlay = tree / "overlays" / "k3s" / "kustomization.yaml"
    doc = yaml.safe_load(overlay.read_text())
    doc["components"].append(f"../../components/{component}")
    overlay.write_text(yaml.safe_dump(doc, sort_keys=False))
    return [d for d in yaml.safe_load_all(kustomize_build(tools, overlay.parent)) if d]


def objects(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    """The pod template's spec of a Deployment, StatefulSet, Job or CronJob."""
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return obj["spec"]["template"]["spec"]
