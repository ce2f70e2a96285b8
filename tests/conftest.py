"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
from pulse_cli.scripts import load_script

REPO = Path(__file__).resolve().parents[1]
STACK_PY = REPO / "deploy" / "local" / "stack.py"


@pytest.fixture(scope="session")
def stack_module() -> ModuleType:
    """deploy/local/stack.py imported as a module (it is a script, not a package)."""
    return load_script(STACK_PY, "pulse_local_stack")


@pytest.fixture(scope="session")
def bench_cpu_module() -> ModuleType:
    """bench/e2e/_cpu.py: CPU per part of the pipeline, from /proc."""
    return load_script(REPO / "bench" / "e2e" / "_cpu.py", "pulse_bench_cpu")
