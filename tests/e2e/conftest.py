"""The e2e tier: the stack and all five services, brought up once per session.

Services that were already running (a developer's `pulse up`) are left running; those this
session started are stopped at its end. The stack itself is shared and never stopped here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pulse_cli import processes
from pulse_cli.stackenv import repo_root, stack_env


@pytest.fixture(scope="session")
def pipeline_env() -> Iterator[dict[str, str]]:
    """`pulse up`: the stack (idempotent) and any service not already running."""
    from pulse_cli.main import bring_up

    root = repo_root(Path(__file__).parent)
    supervisor = processes.Supervisor(root, stack_env(root))
    specs = processes.service_specs(root)
    already = {spec.name for spec in specs if supervisor.pid(spec.name) is not None}
    env = bring_up(root, wait_s=180.0)
    yield env
    for spec in reversed(specs):
        if spec.name not in already:
            supervisor.stop(spec.name)
