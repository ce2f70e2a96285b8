"""`pulse up` never takes another process's /healthz for its own service's: a port that
answers before the service starts is refused, and a service that answered and then exited
is not reported healthy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from pulse_cli import main, processes


class FakeSupervisor:
    """The process table `bring_up` reads: which services run (by name)."""

    running: set[str] = set()
    started: list[str] = []

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        return None

    def run_once(self, spec: Any, *args: str) -> int:
        return 0

    def pid(self, name: str) -> int | None:
        return 1 if name in self.running else None

    def start(self, spec: Any) -> int:
        self.started.append(spec.name)
        self.running.add(spec.name)
        return 1

    def log_file(self, name: str) -> Path:
        return Path(f"/tmp/{name}.log")


@pytest.fixture
def supervisor(monkeypatch: pytest.MonkeyPatch) -> type[FakeSupervisor]:
    FakeSupervisor.running, FakeSupervisor.started = set(), []
    monkeypatch.setattr(main, "_stack", lambda root, action: None)
    monkeypatch.setattr(main, "stack_env", lambda root: {})
    monkeypatch.setattr(main.time, "sleep", lambda s: None)
    monkeypatch.setattr(processes, "Supervisor", FakeSupervisor)
    return FakeSupervisor


def _answering(urls: set[str]) -> Any:
    return lambda url, **_kw: (url in urls, "HTTP 200" if url in urls else "ConnectError")


def test_a_port_answering_before_start_is_refused(
    monkeypatch: pytest.MonkeyPatch, supervisor: type[FakeSupervisor]
) -> None:
    ingest = processes.service_specs(Path("."))[0]
    monkeypatch.setattr(processes, "health", _answering({ingest.health_url}))
    with pytest.raises(typer.Exit):
        main.bring_up(Path("."), wait_s=1.0)
    assert ingest.name not in supervisor.started


def test_a_service_that_answered_then_exited_is_not_healthy(
    monkeypatch: pytest.MonkeyPatch, supervisor: type[FakeSupervisor]
) -> None:
    specs = processes.service_specs(Path("."))
    url_of = {spec.name: spec.health_url for spec in specs}
    dying = specs[0].name
    checks = {"dying": 0}

    def health(url: str, **_kw: Any) -> tuple[bool, str]:
        # Each started service answers (the dying one's port: another process holding it).
        return url in {url_of[name] for name in supervisor.started}, "HTTP 200"

    def pid(self: FakeSupervisor, name: str) -> int | None:
        if name not in supervisor.started:
            return None
        if name == dying:  # alive at the wait loop's first look, gone at the last
            checks["dying"] += 1
            return 1 if checks["dying"] == 1 else None
        return 1

    monkeypatch.setattr(processes, "health", health)
    monkeypatch.setattr(FakeSupervisor, "pid", pid)
    with pytest.raises(typer.Exit):
        main.bring_up(Path("."), wait_s=1.0)
    assert checks["dying"] >= 2  # looked at again after it was seen healthy
