"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
STACK_PY = REPO / "deploy" / "local" / "stack.py"


def load_script(path: Path, name: str) -> ModuleType:
    """A script (not part of a package) imported as the module `name`."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def stack_module() -> ModuleType:
    """deploy/local/stack.py imported as a module (it is a script, not a package)."""
    return load_script(STACK_PY, "pulse_local_stack")


@pytest.fixture(scope="session")
def bench_cpu_module() -> ModuleType:
    """bench/e2e/_cpu.py: CPU per part of the pipeline, from /proc."""
    return load_script(REPO / "bench" / "e2e" / "_cpu.py", "pulse_bench_cpu")
