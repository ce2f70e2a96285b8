"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

STACK_PY = Path(__file__).resolve().parents[1] / "deploy" / "local" / "stack.py"


@pytest.fixture(scope="session")
def stack_module() -> ModuleType:
    """deploy/local/stack.py imported as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("pulse_local_stack", STACK_PY)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module
