"""The supervisor starts a module as a detached process with a pid file and a log, and stops it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pulse_cli.processes import ServiceSpec, Supervisor, free_port, stop_process, wait_healthy


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


def test_pulse_up_points_market_feeds_at_the_local_simulator(monkeypatch: object) -> None:
    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    import json

    from market_feeds.settings import MarketFeedsSettings
    from pulse_cli.processes import SIMULATOR_PORT, service_specs

    specs = {spec.name: spec for spec in service_specs(Path("/repo"))}
    simulator = specs["exchange_simulator"]
    assert simulator.module == "market_feeds.simulator"
    assert str(SIMULATOR_PORT) in simulator.args and str(SIMULATOR_PORT) in simulator.health_url
    env = specs["market_feeds"].env
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = MarketFeedsSettings()  # the settings the service would validate at start-up
    assert settings.enabled == ("coinbase", "binance", "kraken", "alpaca")
    for venue in settings.enabled:
        assert settings.url(venue).startswith(f"ws://127.0.0.1:{SIMULATOR_PORT}/")
    # three exchanges' spellings of bitcoin, one Pulse symbol
    btc = {json.loads(env[f"MARKET_FEEDS_{v}_SYMBOLS"]).get(s) for v, s in
           (("COINBASE", "BTC-USD"), ("BINANCE", "BTCUSDT"), ("KRAKEN", "BTC/USD"))}  # fmt: skip
    assert btc == {"SIM-BTC-USD"}


def test_a_service_that_exited_unreaped_counts_as_stopped(tmp_path: Path) -> None:
    """A child that exited at once (bad settings, missing files) is a zombie until reaped;
    `pulse up` must see it as stopped rather than wait out its health timeout."""
    supervisor = Supervisor(tmp_path, {})
    spec = ServiceSpec("quitter", "pulse_cli.no_such_module", "http://127.0.0.1:1/healthz")
    pid = supervisor.start(spec)
    deadline = time.monotonic() + 30
    while supervisor.pid("quitter") is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert supervisor.pid("quitter") is None
    os.waitpid(pid, 0)  # reap it here; the check above must not have needed that


def _child(code: str) -> subprocess.Popen[bytes]:
    child = subprocess.Popen([sys.executable, "-c", code])
    time.sleep(0.5)  # its handlers installed
    return child


def test_stop_process_kills_a_child_that_ignores_sigterm_after_the_grace() -> None:
    child = _child(
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    )
    started = time.monotonic()
    stop_process(child, grace_s=0.5)
    assert child.returncode == -signal.SIGKILL
    assert 0.5 <= time.monotonic() - started < 10


def test_stop_process_ends_a_child_with_sigterm_and_leaves_an_exited_one() -> None:
    child = _child("import time; time.sleep(60)")
    stop_process(child, grace_s=10)
    assert child.returncode == -signal.SIGTERM
    stop_process(child)  # exited and reaped: nothing to do
    assert child.returncode == -signal.SIGTERM


def test_wait_healthy_returns_once_the_service_answers(tmp_path: Path) -> None:
    port = free_port(range(62060, 62080))  # this suite's share of the 62000-62099 range
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}/", server, timeout_s=20)
        assert server.poll() is None
    finally:
        stop_process(server)


def test_wait_healthy_names_a_service_that_exited_with_its_log(tmp_path: Path) -> None:
    log = tmp_path / "service.log"
    log.write_text("boom: a setting is wrong\n")
    child = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    child.wait(timeout=10)
    with pytest.raises(RuntimeError, match=r"exited\n.*boom: a setting is wrong"):
        wait_healthy("http://127.0.0.1:1/healthz", child, timeout_s=20, log=log)
