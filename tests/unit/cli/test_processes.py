"""The supervisor starts a module as a detached process with a pid file and a log, and stops it."""

from __future__ import annotations

import time
from pathlib import Path

from pulse_cli.processes import ServiceSpec, Supervisor


def test_start_is_idempotent_and_stop_ends_the_process(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path, {"PULSE_TEST_MARKER": "1"})
    spec = ServiceSpec(
        "sleeper", "http.server", "http://127.0.0.1:1/healthz", args=("0", "--bind", "127.0.0.1")
    )
    pid = supervisor.start(spec)
    try:
        assert supervisor.pid("sleeper") == pid
        assert supervisor.start(spec) == pid  # already running: not started twice
        assert supervisor.pid_file("sleeper").read_text().strip() == str(pid)
    finally:
        assert supervisor.stop("sleeper", grace_s=10)
    deadline = time.monotonic() + 5
    while supervisor.pid("sleeper") is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert supervisor.pid("sleeper") is None
    assert not supervisor.pid_file("sleeper").exists()
    assert supervisor.log_file("sleeper").exists()
    assert supervisor.stop("sleeper") is False  # nothing left to stop


def test_caller_environment_wins_over_demo_defaults(tmp_path: Path, monkeypatch: object) -> None:
    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setenv("ARCHIVER_WINDOW_S", "600")
    supervisor = Supervisor(tmp_path, {"S3_BUCKET": "pulse"})
    spec = ServiceSpec("s3_archiver", "s3_archiver", "http://x", env={"ARCHIVER_WINDOW_S": "30"})
    env = supervisor.environment(spec)
    assert env["ARCHIVER_WINDOW_S"] == "600"
    assert env["S3_BUCKET"] == "pulse"
