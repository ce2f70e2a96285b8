"""The e2e tier: the stack and all five services, brought up once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pulse_cli.stackenv import repo_root


@pytest.fixture(scope="session")
def pipeline_env() -> Iterator[dict[str, str]]:
    """`pulse up`: the stack (idempotent) and any service not already running."""
    from pulse_cli.main import bring_up

    root = repo_root(Path(__file__).parent)
    yield bring_up(root, wait_s=180.0)
