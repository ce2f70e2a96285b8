"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from aiokafka.consumer import fetcher as aiokafka_fetcher
from pulse_cli.scripts import load_script

REPO = Path(__file__).resolve().parents[1]
STACK_PY = REPO / "deploy" / "local" / "stack.py"

# The fault suite restarts the stack's parts and takes minutes: only `make chaos` runs it.
collect_ignore = [] if os.environ.get("PULSE_CHAOS") == "1" else ["chaos"]


@pytest.fixture(scope="session")
def stack_module() -> ModuleType:
    """deploy/local/stack.py imported as a module (it is a script, not a package)."""
    return load_script(STACK_PY, "pulse_local_stack")


@pytest.fixture(scope="session")
def bench_cpu_module() -> ModuleType:
    """bench/e2e/_cpu.py: CPU per part of the pipeline, from /proc."""
    return load_script(REPO / "bench" / "e2e" / "_cpu.py", "pulse_bench_cpu")


@pytest.fixture
def throwaway_ca(tmp_path: Path) -> Path:
    """A self-signed CA certificate (PEM) that signed nothing the stack serves."""
    key, pem = tmp_path / "throwaway-ca.key", tmp_path / "throwaway-ca.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(pem), "-days", "1", "-subj", "/CN=Throwaway test CA"],
        check=True, capture_output=True,
    )  # fmt: skip
    return pem


@pytest.fixture(autouse=True)
def _aiokafka_fetcher_as_found(monkeypatch: pytest.MonkeyPatch) -> None:
    """The archiver's `record_blocks.install` swaps aiokafka's fetcher's `MemoryRecords` for a
    subclass, process-wide; tests that install it in the pytest process (unit tests, the
    real-broker comparison) would leave every later test on a patched aiokafka. Put aiokafka's
    own class back after each test."""
    monkeypatch.setattr(aiokafka_fetcher, "MemoryRecords", aiokafka_fetcher.MemoryRecords)


@pytest.fixture
def trace_spans(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Tracing on for one test, as `servicekit.tracing.configure` turns it on, but exporting to
    memory: returns the InMemorySpanExporter (`get_finished_spans()`). Parts that read
    `tracing.ENABLED` at construction must be built after this fixture."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from servicekit import tracing

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "ENABLED", True)
    monkeypatch.setattr(tracing, "_tracer", provider.get_tracer("pulse.test"))
    return exporter
