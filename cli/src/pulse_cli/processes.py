"""The services and the exchange simulator as processes: start, stop, pid files, logs, health.

Each service logs to `.stack/logs/<service>.log` and keeps its pid in
`.stack/run/<service>.pid`. A pid file whose process is gone counts as stopped.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    name: str
    module: str
    health_url: str
    env: dict[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    metrics_url: str | None = None


# `make demo`'s local receivers (pulse_cli.demo starts them): a signed webhook and an SMTP
# server. Fixed ports, beside the services' own.
DEMO_WEBHOOK_PORT = 58005
DEMO_SMTP_PORT = 58025
DEMO_WEBHOOK_URL = f"http://127.0.0.1:{DEMO_WEBHOOK_PORT}/pulse"
DEMO_MAIL_TO = "reviews-team@pulse.local"


def notifier_webhook_secret(root: Path) -> str:
    """The demo's webhook signing secret (`whsec_` + base64), made once under `.stack/`, so
    the notifier `pulse up` starts and the demo's receiver agree on it."""
    path = root / ".stack" / "notifier" / "webhook-secret"
    if path.is_file():
        return path.read_text(encoding="utf-8").strip()
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    if path.parents[1].is_dir():  # only inside a checkout whose stack exists
        path.parent.mkdir(exist_ok=True)
        path.write_text(secret + "\n", encoding="utf-8")
        path.chmod(0o600)
    return secret


def notifier_env(root: Path) -> dict[str, str]:
    """Demo defaults for the notifier; any NOTIFIER_* in the caller's environment wins (the
    Supervisor copies the environment, then fills in only what is missing)."""
    return {
        "NOTIFIER_HTTP_HOST": "127.0.0.1",
        "NOTIFIER_STATE_DIR": str(root / ".stack" / "notifier"),
        "NOTIFIER_URLS": (
            f"webhook+{DEMO_WEBHOOK_URL},"
            f"mailto://pulse.local:{DEMO_SMTP_PORT}?smtp=127.0.0.1"
            f"&from=pulse@pulse.local&to={DEMO_MAIL_TO}"
        ),
        "NOTIFIER_WEBHOOK_SECRET": notifier_webhook_secret(root),
        "NOTIFIER_DASHBOARD_URL": "http://127.0.0.1:58000/dashboard/",
        # The demo's receivers listen only while a demo runs. Alerts raised before it (stale
        # feeds, earlier runs) find them down, and the default 300 s retry cap would leave
        # the demo's own notifications waiting behind those backoffs past its end.
        "NOTIFIER_BACKOFF_MAX_S": "2",
    }


DASHBOARD_URL_PATH = "/dashboard/"


def dashboard_viewer_key(root: Path) -> str:
    """The local dashboard's viewer key: DASHBOARD_VIEWER_KEYS's first key if set, else the
    one kept in `.stack/secrets/dashboard_viewer_key` (made on first use, mode 0600; only
    inside a checkout whose stack exists, like the notifier's webhook secret)."""
    configured = os.environ.get("DASHBOARD_VIEWER_KEYS", "").split(",")[0].strip()
    if configured:
        return configured
    path = root / ".stack" / "secrets" / "dashboard_viewer_key"
    if path.is_file():
        return path.read_text(encoding="utf-8").strip()
    key = "pulse-viewer-" + secrets.token_hex(16)
    if path.parents[1].is_dir():
        path.parent.mkdir(exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(key + "\n", encoding="utf-8")
    return key


def service_specs(root: Path) -> tuple[ServiceSpec, ...]:
    """The services `pulse up` runs, with demo-friendly defaults the environment can override.

    The archiver's window is shortened (30 s, 5 s idle grace) so the archive fills within
    the demo; candles wait 30 s of event time for stragglers (ticks reach the processor
    over three partitions, see cli/README.md); the crawler runs continuously with no sites
    unless CRAWLER_SITES_FILE is set (the demo crawls its sample site with `--once`).
    market_feeds reads the local exchange simulator (no internet needed) under `SIM-` symbols,
    apart from the demo's API ticks; `MARKET_FEEDS_<VENUE>_URL=` the exchange's own address
    (README) points a connector at the real exchange.
    """
    state = root / ".stack" / "crawler-state"
    crawler_env = {
        "CRAWLER_HTTP_HOST": "127.0.0.1",
        "CRAWLER_STATE_DIR": str(state),
    }
    if "CRAWLER_SITES_FILE" not in os.environ:
        crawler_env["CRAWLER_SITES"] = "[]"
    return (
        ServiceSpec("ingest", "ingest", "http://127.0.0.1:58001/healthz"),
        ServiceSpec(
            "cdc_processor",
            "cdc_processor",
            "http://127.0.0.1:58011/healthz",
            env={"CDC_CANDLE_GRACE_S": "30"},
            metrics_url="http://127.0.0.1:58011/metrics",
        ),
        ServiceSpec(
            "s3_archiver",
            "s3_archiver",
            "http://127.0.0.1:58012/healthz",
            env={"ARCHIVER_WINDOW_S": "30", "ARCHIVER_IDLE_GRACE_S": "5"},
            metrics_url="http://127.0.0.1:58012/metrics",
        ),
        ServiceSpec("crawler", "crawler", "http://127.0.0.1:58013/healthz", env=crawler_env),
        ServiceSpec("query", "query", "http://127.0.0.1:58002/healthz"),
        ServiceSpec(
            "exchange_simulator",
            "market_feeds.simulator",
            f"http://127.0.0.1:{SIMULATOR_PORT}/healthz",
            args=("--port", str(SIMULATOR_PORT), "--rate", "5"),
        ),
        ServiceSpec(
            "market_feeds",
            "market_feeds",
            "http://127.0.0.1:58014/healthz",
            env=market_feeds_demo_env(),
            metrics_url="http://127.0.0.1:58014/metrics",
        ),
        ServiceSpec(
            "notifier",
            "notifier",
            "http://127.0.0.1:58004/healthz",
            env=notifier_env(root),
            metrics_url="http://127.0.0.1:58004/metrics",
        ),
        ServiceSpec(
            "dashboard",
            "dashboard",
            "http://127.0.0.1:58003/healthz",
            env={"DASHBOARD_VIEWER_KEYS": dashboard_viewer_key(root)},
            metrics_url="http://127.0.0.1:58003/metrics",
        ),
        # data-quality checks hourly and the daily digests (`python -m quality schedule`)
        ServiceSpec(
            "quality",
            "quality",
            "http://127.0.0.1:58016/healthz",
            env={"QUALITY_HTTP_PORT": "58016", "QUALITY_LOG_JSON": "false"},
            args=("schedule",),
            metrics_url="http://127.0.0.1:58016/metrics",
        ),
    )


SIMULATOR_PORT = 58040
DEMO_FEED_SYMBOLS: dict[str, dict[str, str]] = {
    # venue → {venue symbol: Pulse symbol}: three spellings of bitcoin, one Pulse name.
    "coinbase": {"BTC-USD": "SIM-BTC-USD", "ETH-USD": "SIM-ETH-USD"},
    "binance": {"BTCUSDT": "SIM-BTC-USD", "ETHUSDT": "SIM-ETH-USD"},
    "kraken": {"BTC/USD": "SIM-BTC-USD", "ETH/USD": "SIM-ETH-USD"},
    "alpaca": {"AAPL": "SIM-AAPL"},
}


def market_feeds_demo_env(*, port: int = SIMULATOR_PORT) -> dict[str, str]:
    """market_feeds on the local simulator: every connector, the simulator's Alpaca key."""
    base = f"ws://127.0.0.1:{port}"
    paths = {
        "coinbase": "/coinbase",
        "binance": "/binance/stream",
        "kraken": "/kraken/v2",
        "alpaca": "/alpaca/v2/iex",
    }
    env = {
        "MARKET_FEEDS_ENABLED": ",".join(DEMO_FEED_SYMBOLS),
        "MARKET_FEEDS_ALPACA_KEY_ID": "sim-key",
        "MARKET_FEEDS_ALPACA_SECRET_KEY": "sim-secret",
    }
    for venue, symbols in DEMO_FEED_SYMBOLS.items():
        env[f"MARKET_FEEDS_{venue.upper()}_URL"] = base + paths[venue]
        env[f"MARKET_FEEDS_{venue.upper()}_SYMBOLS"] = json.dumps(symbols)
    return env


def _exited_unreaped(pid: int) -> bool:
    """True for a zombie: a service this process started that has exited but not been reaped
    still answers kill(pid, 0), and `pulse up` would wait out its health timeout on it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state follows the command name, which is in parentheses and may contain spaces.
    return stat[stat.rfind(")") + 2 :].startswith("Z")


class Supervisor:
    def __init__(self, root: Path, stack_env: dict[str, str]) -> None:
        self.root = root
        self.stack_env = stack_env
        self.log_dir = root / ".stack" / "logs"
        self.run_dir = root / ".stack" / "run"

    def pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def pid(self, name: str) -> int | None:
        """The service's pid if its process is alive."""
        try:
            pid = int(self.pid_file(name).read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        if _exited_unreaped(pid):
            return None
        return pid

    def environment(self, spec: ServiceSpec) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.stack_env)
        for key, value in spec.env.items():
            env.setdefault(key, value)  # the caller's environment wins over demo defaults
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def run_once(self, spec: ServiceSpec, *args: str, timeout_s: float = 120.0) -> int:
        """Run `python -m <module> args…` to completion, appending to the service's log."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_file(spec.name).open("ab") as log:
            completed = subprocess.run(  # noqa: S603  # our own interpreter and module
                [sys.executable, "-m", spec.module, *args],
                cwd=self.root,
                env=self.environment(spec),
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout_s,
                check=False,
            )
        return completed.returncode

    def start(self, spec: ServiceSpec) -> int:
        """Start the service unless it runs already; returns its pid."""
        running = self.pid(spec.name)
        if running is not None:
            return running
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_file(spec.name).open("ab")
        process = subprocess.Popen(  # noqa: S603  # our own interpreter and module
            [sys.executable, "-m", spec.module, *spec.args],
            cwd=self.root,
            env=self.environment(spec),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # survives the terminal; stopped by pid
        )
        log.close()
        self.pid_file(spec.name).write_text(f"{process.pid}\n")
        return process.pid

    def stop(self, name: str, *, grace_s: float = 30.0) -> bool:
        """SIGTERM the service's process group, SIGKILL after `grace_s`; True if it ran."""
        pid = self.pid(name)
        self.pid_file(name).unlink(missing_ok=True)
        if pid is None:
            return False
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            if not _alive(pid):
                return True
            time.sleep(0.2)
        _signal_group(pid, signal.SIGKILL)
        return True


def free_port(ports: range, *, shuffle: bool = False) -> int:
    """The first port of `ports` nothing is bound to now (bound, then released, for a test's or
    a benchmark's service to take next); RuntimeError when every one is taken. `shuffle` tries
    them in random order: a caller that picks several ports before binding any (a receiver
    URL nothing will listen on, then a service's port) would otherwise get the same one."""
    order = random.sample(list(ports), len(ports)) if shuffle else ports
    for port in order:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1}")


def stop_process(process: subprocess.Popen[bytes], *, grace_s: float = 30.0) -> None:
    """SIGTERM a child this process started (a test's or a benchmark's service), SIGKILL
    after `grace_s`; reaped either way. Nothing for a child that has exited already."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def health(url: str, *, timeout_s: float = 2.0) -> tuple[bool, str]:
    try:
        response = httpx.get(url, timeout=timeout_s)
    except httpx.HTTPError as exc:
        return False, type(exc).__name__
    return response.status_code == 200, f"HTTP {response.status_code}"


def wait_healthy(
    url: str,
    process: subprocess.Popen[bytes],
    *,
    timeout_s: float,
    interval_s: float = 0.2,
    log: Path | None = None,
) -> None:
    """Until `url` answers 200 (a test's or a benchmark's service starting). RuntimeError if
    `process` exits or `timeout_s` passes first, ending with the last 3,000 characters of its
    `log`."""
    deadline = time.monotonic() + timeout_s
    while not health(url, timeout_s=1.0)[0]:
        if process.poll() is not None or time.monotonic() > deadline:
            state = "exited" if process.poll() is not None else f"not healthy in {timeout_s:g} s"
            tail = log.read_text(errors="replace")[-3000:] if log is not None else ""
            raise RuntimeError(f"{url}: {state}\n{tail}")
        time.sleep(interval_s)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of ours counts as gone once reaped.
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return waited == 0


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)  # the service's own session: itself and its children
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
