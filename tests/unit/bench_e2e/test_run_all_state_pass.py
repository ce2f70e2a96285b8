"""bench/run_all.py's order around bench/e2e/: services up, the e2e scripts, latency.py again on
services restarted with a pre-loaded state, services down — before the next folder's
benchmark, whichever folders follow e2e. The services and scripts are recorded, not run (the
real pass needs `pulse up`)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from pulse_cli.scripts import load_script

REPO = Path(__file__).resolve().parents[3]
BENCH = REPO / "bench"


@pytest.fixture
def run_all() -> ModuleType:
    return load_script(BENCH / "run_all.py", "pulse_bench_run_all")


def recorded_services(calls: list[Any]) -> SimpleNamespace:
    """bench/e2e/_services.py as run_all uses it, noting `up` (with its options) and `down`."""
    return SimpleNamespace(
        BENCH_ENV={},
        _state=SimpleNamespace(DEFAULT_CLAIMS=7_000, DEFAULT_PRODUCTS=30),
        up=lambda *a, **kw: calls.append(("up", kw)) or 0,
        down=lambda: calls.append("down") or 0,
    )


def test_latency_runs_again_on_a_preloaded_state_before_the_services_stop(
    run_all: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Any] = []
    services = recorded_services(calls)

    def run_script(label: str, command: list[str], *, timeout_s: float) -> list[Any]:
        calls.append((label, command[2:]))
        return [(label, {"name": label, "pass": True})]

    scripts = [
        BENCH / "cdc_processor" / "run.py",
        BENCH / "e2e" / "archive_latency.py",
        BENCH / "e2e" / "latency.py",
        BENCH / "ingest" / "bench_ingest.py",  # a folder after e2e: services must be down by then
    ]
    monkeypatch.setattr(run_all, "discover", lambda only=None: scripts)
    monkeypatch.setattr(run_all, "services_running", lambda: False)
    monkeypatch.setattr(run_all, "e2e_services", lambda: services)
    monkeypatch.setattr(run_all, "run_script", run_script)
    monkeypatch.setattr(sys, "argv", ["run_all.py"])
    assert run_all.main() == 0
    assert calls == [
        ("cdc_processor/run.py", []),
        ("up", {}),
        ("e2e/archive_latency.py", []),
        ("e2e/latency.py", []),
        "down",
        ("up", {"state_claims": 7_000, "state_products": 30}),
        ("e2e/latency.py (state)", ["--state-label", "7,000 dedup claims, 30 products"]),
        "down",
        ("ingest/bench_ingest.py", []),
    ]


def test_no_second_pass_when_asked_for_none_or_services_were_already_up(
    run_all: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Any] = []
    services = recorded_services(calls)
    monkeypatch.setattr(run_all, "discover", lambda only=None: [BENCH / "e2e" / "latency.py"])
    monkeypatch.setattr(run_all, "e2e_services", lambda: services)
    monkeypatch.setattr(
        run_all, "run_script", lambda label, c, *, timeout_s: calls.append(label) or []
    )
    monkeypatch.setattr(run_all, "services_running", lambda: False)
    monkeypatch.setattr(sys, "argv", ["run_all.py", "--e2e-state-claims", "0"])
    run_all.main()
    assert calls == [("up", {}), "e2e/latency.py", "down"]

    calls.clear()
    monkeypatch.setattr(run_all, "services_running", lambda: True)  # someone's `pulse up`
    monkeypatch.setattr(sys, "argv", ["run_all.py"])
    run_all.main()
    assert calls == ["e2e/latency.py"]  # their services and state are left as they are
