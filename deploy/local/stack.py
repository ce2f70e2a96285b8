#!/usr/bin/env python3
"""Pulse's real local stack on 127.0.0.1: PostgreSQL, Kafka (KRaft), Kafka Connect with Debezium,
S3Proxy and nginx, each a background process with its state under ``.stack/``.

Stdlib only, on purpose: ``make stack-up`` runs it with the system ``python3`` before any
virtualenv exists.  Usage::

    python3 deploy/local/stack.py up [PART ...]       start what is not running, wait until healthy
    python3 deploy/local/stack.py down [PART ...]     stop (a full down drops the Debezium slot)
    python3 deploy/local/stack.py restart PART ...    stop then start the named parts
    python3 deploy/local/stack.py status              each part, its address, up/down
    python3 deploy/local/stack.py logs [PART] [-n N] [-f]
    python3 deploy/local/stack.py env                 print the .stack/env lines

Parts: postgres, kafka, connect, s3proxy, nginx.  Settings (all optional) come from the
environment: PULSE_STACK_DIR, PULSE_STACK_CACHE_DIR, the PULSE_*_PORT variables listed in
``PORT_VARS``, and PULSE_CONNECT_KAFKA_SECURITY (PLAINTEXT, the default, or SASL_SSL: the
Connect worker and its Debezium connector use the broker's TLS + SCRAM listener).  The broker
always has that listener beside the plaintext one: its CA and certificate are made at the first
``up`` under .stack/secrets/kafka-tls/, its SCRAM user is created then.  See
deploy/local/README.md.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import datetime
import fcntl
import hashlib
import hmac
import http.client
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import string
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

REPO = Path(__file__).resolve().parents[2]
DEPLOY_LOCAL = REPO / "deploy" / "local"
DEPLOY_NGINX = REPO / "deploy" / "nginx"
CONNECTOR_FILE = REPO / "deploy" / "debezium" / "pulse-postgres.json"

HOST = "127.0.0.1"
PARTS = ("postgres", "kafka", "s3proxy", "connect", "nginx")
JVM_PARTS = ("kafka", "connect", "s3proxy")
# Which parts a part needs running before it can start.
REQUIRES = {"connect": ("kafka", "postgres")}

PORT_VARS = {
    "pg": ("PULSE_PG_PORT", 55432),
    "kafka": ("PULSE_KAFKA_PORT", 59092),
    "kafka_controller": ("PULSE_KAFKA_CONTROLLER_PORT", 59093),
    "kafka_tls": ("PULSE_KAFKA_TLS_PORT", 59094),  # SASL_SSL (TLS + SCRAM-SHA-512)
    "connect": ("PULSE_CONNECT_PORT", 58083),
    "s3": ("PULSE_S3_PORT", 58080),
    "nginx": ("PULSE_NGINX_PORT", 58000),
    "ingest": ("PULSE_INGEST_PORT", 58001),
    "query": ("PULSE_QUERY_PORT", 58002),
    "notifier": ("PULSE_NOTIFIER_PORT", 58004),
    "dashboard": ("PULSE_DASHBOARD_PORT", 58003),
}

PG_BIN_DEFAULT = "/usr/lib/postgresql/15/bin"
DB_NAME = "pulse"
DB_USER = "pulse"
S3_BUCKET = "pulse"
AWS_REGION = "us-east-1"
SLOT_NAME = "pulse_slot"
SCRAM_USER = "pulse"
SCRAM_MECHANISM = "SCRAM-SHA-512"
CONNECT_SECURITY_VAR = "PULSE_CONNECT_KAFKA_SECURITY"

# Health waits, in seconds.  Generous: two JVMs starting at once on 2 cores are slow.
WAIT_S = {
    "postgres": 60,
    "kafka": 120,
    "connect": 180,
    "connector": 120,
    "s3proxy": 90,
    "nginx": 15,
}
STOP_WAIT_S = 45

JVM_COMMON = [
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
    "-Dfile.encoding=UTF-8",
]
HEAP = {
    "kafka": ["-Xms256m", "-Xmx768m"],
    "connect": ["-Xms128m", "-Xmx512m"],
    "s3proxy": ["-Xms64m", "-Xmx256m"],
}


class StackError(Exception):
    """A failure with a message meant for the person at the terminal."""


# --------------------------------------------------------------------------------------------
# Settings and paths


@dataclass(frozen=True)
class Stack:
    dir: Path
    cache_dir: Path
    ports: dict[str, int]
    pg_bin: Path
    connect_security: str = "PLAINTEXT"

    @classmethod
    def from_env(cls) -> Stack:
        stack_dir = Path(os.environ.get("PULSE_STACK_DIR") or REPO / ".stack").resolve()
        cache_dir = Path(os.environ.get("PULSE_STACK_CACHE_DIR") or stack_dir).resolve()
        ports: dict[str, int] = {}
        for name, (var, default) in PORT_VARS.items():
            raw = os.environ.get(var, "")
            try:
                ports[name] = int(raw) if raw else default
            except ValueError:
                raise StackError(f"{var}={raw!r} is not a port number") from None
            if not 0 < ports[name] < 65536:
                raise StackError(f"{var}={raw!r} is not a port number")
        pg_bin = Path(os.environ.get("PULSE_PG_BIN", PG_BIN_DEFAULT))
        connect_security = os.environ.get(CONNECT_SECURITY_VAR, "") or "PLAINTEXT"
        if connect_security not in ("PLAINTEXT", "SASL_SSL"):
            raise StackError(f"{CONNECT_SECURITY_VAR}={connect_security!r}: PLAINTEXT or SASL_SSL")
        return cls(
            dir=stack_dir,
            cache_dir=cache_dir,
            ports=ports,
            pg_bin=pg_bin,
            connect_security=connect_security,
        )

    # layout ---------------------------------------------------------------------------------
    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    @property
    def run(self) -> Path:
        return self.dir / "run"

    @property
    def secrets_dir(self) -> Path:
        return self.dir / "secrets"

    @property
    def kafka_tls_dir(self) -> Path:
        return self.secrets_dir / "kafka-tls"

    @property
    def env_file(self) -> Path:
        return self.dir / "env"

    @property
    def jars(self) -> Path:
        return self.cache_dir / "jars"

    @property
    def plugins(self) -> Path:
        return self.cache_dir / "connect-plugins"

    @property
    def pg_dir(self) -> Path:
        return self.dir / "pg"

    @property
    def pg_data(self) -> Path:
        return self.pg_dir / "data"

    @property
    def pg_socket_dir(self) -> Path:
        return self.pg_dir / "sock"

    def log(self, part: str) -> Path:
        return self.logs / f"{part}.log"

    def pidfile(self, part: str) -> Path:
        return self.run / f"{part}.pid"

    def address(self, part: str) -> str:
        p = self.ports
        return {
            "postgres": f"{HOST}:{p['pg']}",
            "kafka": f"{HOST}:{p['kafka']} (TLS+SCRAM :{p['kafka_tls']}, "
            f"controller :{p['kafka_controller']})",
            "connect": f"http://{HOST}:{p['connect']}",
            "s3proxy": f"http://{HOST}:{p['s3']}",
            "nginx": f"http://{HOST}:{p['nginx']} -> ingest :{p['ingest']}, query :{p['query']}"
            f", dashboard :{p['dashboard']}",
        }[part]

    def listen_ports(self, part: str) -> list[tuple[str, int]]:
        p = self.ports
        return {
            "postgres": [("PULSE_PG_PORT", p["pg"])],
            "kafka": [
                ("PULSE_KAFKA_PORT", p["kafka"]),
                ("PULSE_KAFKA_CONTROLLER_PORT", p["kafka_controller"]),
                ("PULSE_KAFKA_TLS_PORT", p["kafka_tls"]),
            ],
            "connect": [("PULSE_CONNECT_PORT", p["connect"])],
            "s3proxy": [("PULSE_S3_PORT", p["s3"])],
            "nginx": [("PULSE_NGINX_PORT", p["nginx"])],
        }[part]

    def template_vars(self) -> dict[str, str]:
        p = self.ports
        return {
            "HOST": HOST,
            "PG_PORT": str(p["pg"]),
            "PG_SOCKET_DIR": str(self.pg_socket_dir),
            "KAFKA_PORT": str(p["kafka"]),
            "KAFKA_CONTROLLER_PORT": str(p["kafka_controller"]),
            "KAFKA_TLS_PORT": str(p["kafka_tls"]),
            "KAFKA_TLS_KEYSTORE": str(self.kafka_tls_dir / "broker.p12"),
            "KAFKA_DATA_DIR": str(self.dir / "kafka" / "data"),
            "CONNECT_PORT": str(p["connect"]),
            "CONNECT_PLUGIN_DIR": str(self.plugins),
            "S3_PORT": str(p["s3"]),
            "S3_DATA_DIR": str(self.dir / "s3"),
            "NGINX_PORT": str(p["nginx"]),
            "INGEST_PORT": str(p["ingest"]),
            "QUERY_PORT": str(p["query"]),
            "NOTIFIER_PORT": str(p["notifier"]),
            "DASHBOARD_PORT": str(p["dashboard"]),
        }


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def say(msg: str) -> None:
    print(msg, flush=True)


def render(template: Path, dest: Path, values: dict[str, str]) -> bool:
    """Fill ``${NAME}`` placeholders; a placeholder without a value is an error, not a blank.
    True when `dest` was written (it did not hold this text yet)."""
    try:
        text = string.Template(template.read_text()).substitute(values)
    except (KeyError, ValueError) as err:
        raise StackError(
            f"template {template}: bad or unknown placeholder ({err}); write a literal $ as $$"
        ) from None
    return write_if_changed(dest, text)


def write_if_changed(dest: Path, text: str, mode: int | None = None) -> bool:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() and dest.read_text() == text:
        return False
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.write_text(text)
    if mode is not None:
        tmp.chmod(mode)
    tmp.replace(dest)
    return True


@contextlib.contextmanager
def stack_lock(stack: Stack) -> Iterator[None]:
    """One up/down/restart at a time per state dir (several engineers share one stack)."""
    stack.run.mkdir(parents=True, exist_ok=True)
    with open(stack.run / "stack.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say("stack: another stack.py is working on this stack; waiting for it ...")
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield


# --------------------------------------------------------------------------------------------
# Secrets: generated once, kept in .stack/secrets/, never committed


def secret(stack: Stack, name: str, make: Callable[[], str]) -> str:
    path = stack.secrets_dir / name
    if path.exists():
        return path.read_text().strip()
    stack.secrets_dir.mkdir(parents=True, exist_ok=True)
    stack.secrets_dir.chmod(0o700)
    value = make()
    path.write_text(value + "\n")
    path.chmod(0o600)
    return value


def kraft_cluster_id() -> str:
    """A UUID in URL-safe base64 without padding, as KRaft wants, never starting with "-":
    kafka-storage would read such an id as an option (1 in 64 random ids; Kafka's own
    random-uuid avoids it the same way)."""
    while True:
        value = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
        if not value.startswith("-"):
            return value


@dataclass(frozen=True)
class Secrets:
    pg_admin_password: str
    pg_password: str
    s3_access_key: str
    s3_secret_key: str
    api_key: str
    kafka_cluster_id: str
    kafka_scram_password: str
    kafka_keystore_password: str

    @classmethod
    def load(cls, stack: Stack) -> Secrets:
        return cls(
            pg_admin_password=secret(stack, "pg_admin_password", lambda: secrets.token_hex(16)),
            pg_password=secret(stack, "pg_password", lambda: secrets.token_hex(16)),
            s3_access_key=secret(
                stack, "s3_access_key", lambda: "PULSE" + secrets.token_hex(8).upper()
            ),
            s3_secret_key=secret(stack, "s3_secret_key", lambda: secrets.token_urlsafe(30)),
            api_key=secret(stack, "api_key", lambda: "pulse-local-" + secrets.token_hex(16)),
            kafka_cluster_id=secret(stack, "kafka_cluster_id", kraft_cluster_id),
            kafka_scram_password=secret(
                stack, "kafka_scram_password", lambda: secrets.token_urlsafe(24)
            ),
            kafka_keystore_password=secret(
                stack, "kafka_keystore_password", lambda: secrets.token_hex(16)
            ),
        )


def env_lines(stack: Stack, sec: Secrets) -> str:
    p = stack.ports
    values = {
        "KAFKA_BOOTSTRAP_SERVERS": f"{HOST}:{p['kafka']}",
        "KAFKA_CONNECT_URL": f"http://{HOST}:{p['connect']}",
        "DATABASE_URL": f"postgresql://{DB_USER}:{sec.pg_password}@{HOST}:{p['pg']}/{DB_NAME}",
        "PULSE_PG_ADMIN_URL": f"postgresql://postgres:{sec.pg_admin_password}@{HOST}:{p['pg']}/{DB_NAME}",
        "S3_ENDPOINT_URL": f"http://{HOST}:{p['s3']}",
        "S3_BUCKET": S3_BUCKET,
        "AWS_ACCESS_KEY_ID": sec.s3_access_key,
        "AWS_SECRET_ACCESS_KEY": sec.s3_secret_key,
        "AWS_REGION": AWS_REGION,
        "PULSE_API_URL": f"http://{HOST}:{p['nginx']}",
        "PULSE_API_KEY": sec.api_key,
        "PULSE_STACK_DIR": str(stack.dir),
        # The broker's TLS + SCRAM listener. Not under the KAFKA_* names the clients read (that
        # would switch every process to it): a test or a person opts in by copying them there.
        "PULSE_KAFKA_TLS_BOOTSTRAP_SERVERS": f"{HOST}:{p['kafka_tls']}",
        "PULSE_KAFKA_TLS_CAFILE": str(stack.kafka_tls_dir / "ca.pem"),
        "PULSE_KAFKA_SCRAM_USERNAME": SCRAM_USER,
        "PULSE_KAFKA_SCRAM_PASSWORD": sec.kafka_scram_password,
    }
    head = "# Written by deploy/local/stack.py: local stack endpoints and generated credentials.\n"
    return head + "".join(f"{k}={v}\n" for k, v in values.items())


def write_env(stack: Stack, sec: Secrets) -> None:
    write_if_changed(stack.env_file, env_lines(stack, sec), mode=0o600)


# --------------------------------------------------------------------------------------------
# Processes


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def is_ours(pid: int | None, stack: Stack) -> bool:
    """A live process whose command line names our state dir (guards against pid reuse)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z" and f"{stack.dir}/" in cmdline(pid)


def part_pid(stack: Stack, part: str) -> int | None:
    if part == "postgres":
        return read_pid(stack.pg_data / "postmaster.pid")
    return read_pid(stack.pidfile(part))


def is_running(stack: Stack, part: str) -> bool:
    return is_ours(part_pid(stack, part), stack)


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return True
    return False


RESERVED_PORTS = Path("/proc/sys/net/ipv4/ip_local_reserved_ports")
# `pulse up`'s services, the exchange simulator and the demo's receivers listen on fixed ports
# in 58000-58099 (cli/src/pulse_cli/processes.py); reserved with the stack's own.
SERVICE_PORT_BLOCK = range(58000, 58100)
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def reserved_ports_value(current: str, ports: Iterable[int], ephemeral: tuple[int, int]) -> str:
    """`current` (the kernel's reserved list, "a,b-c") with every port of `ports` inside the
    ephemeral range added; "" when nothing needs adding."""
    low, high = ephemeral
    have: set[int] = set()
    for item in filter(None, (i.strip() for i in current.split(","))):
        first, _, last = item.partition("-")
        have.update(range(int(first), int(last or first) + 1))
    missing = sorted({p for p in ports if low <= p <= high} - have)
    if not missing:
        return ""
    return ",".join(filter(None, [current.strip(), *map(str, missing)]))


def reserve_stack_ports(stack: Stack) -> None:
    """Keep the kernel from handing the stack's and the services' ports out as source ports.

    They sit in Linux's ephemeral range (32768-60999). While a part is down its clients keep
    connecting to it, and a connect to a local port nobody listens on can be given that very
    port as its source: the socket connects to itself (TCP simultaneous open) and holds the
    port, and the part's restart fails with "Address already in use" (a `make chaos` Kafka
    restart on CI, 2026-12-07); and any busy client can be given a service's port as its source
    just before the service binds it (market_feeds' 58014 in the next CI run). Reserved ports
    are never picked as source ports; binding them
    is unaffected. Needs root; without it, one line says how.
    """
    try:
        low, high = map(int, EPHEMERAL_RANGE.read_text().split())
        ports = {*stack.ports.values(), *SERVICE_PORT_BLOCK}
        value = reserved_ports_value(RESERVED_PORTS.read_text(), ports, (low, high))
        if value:
            RESERVED_PORTS.write_text(value + "\n")
    except (OSError, ValueError) as exc:
        wanted = ",".join(str(p) for p in sorted(stack.ports.values())) + ",58000-58099"
        say(
            f"ports: could not reserve {wanted} from the ephemeral range ({exc}); a restarted part "
            f"can then rarely find its port held by a client's self-connection. As root: "
            f"sysctl -w net.ipv4.ip_local_reserved_ports=<current>,{wanted}"
        )


def port_listener(port: int) -> tuple[str, int] | None:
    """Best effort: (name, pid) of the process listening on the port (`ss`, as on Debian)."""
    ss = shutil.which("ss")
    if not ss:
        return None
    out = subprocess.run([ss, "-Hltnp", f"sport = :{port}"], capture_output=True, text=True).stdout
    m = re.search(r'users:\(\("([^"]+)",pid=(\d+)', out)
    return (m.group(1), int(m.group(2))) if m else None


# How each part's command line names its state dir (see jvm_argv, pg_ctl -D, nginx -p).
_STACK_DIR_IN_CMDLINE = (
    r"-Dpulse\.stack\.dir=(/\S*?)/?(?:\s|$)",
    r"\s-D\s*(/\S+)/pg/data(?:\s|$)",
    r"\s-p\s+(/\S+)/nginx/(?:\s|$)",
)


def other_stack_dir(pid: int) -> Path | None:
    cmd = cmdline(pid)
    for pattern in _STACK_DIR_IN_CMDLINE:
        m = re.search(pattern, cmd)
        if m:
            return Path(m.group(1))
    return None


def takeover_allowed() -> bool:
    """CI owns its machine: a stack left running by an earlier checkout is stopped, not fatal."""
    return os.environ.get("PULSE_STACK_TAKEOVER") == "1" or os.environ.get("CI") == "true"


def stop_other_stack(stack: Stack, other: Path) -> None:
    other_stack = dataclasses.replace(stack, dir=other)
    for part in ("nginx", "connect", "kafka", "s3proxy", "postgres"):
        stop_part(other_stack, part)


def check_ports_free(stack: Stack, part: str) -> None:
    for var, port in stack.listen_ports(part):
        if not port_in_use(port):
            continue
        listener = port_listener(port)
        other = other_stack_dir(listener[1]) if listener else None
        if other and other != stack.dir:
            if takeover_allowed():
                say(f"{part}: port {port} is held by another Pulse stack ({other}); stopping it")
                stop_other_stack(stack, other)
                deadline = time.monotonic() + 10
                while port_in_use(port) and time.monotonic() < deadline:
                    time.sleep(0.2)
                if not port_in_use(port):
                    continue
            raise StackError(
                f"{part}: port {HOST}:{port} is held by another Pulse stack ({other}). Stop it "
                f"(PULSE_STACK_DIR={other} python3 deploy/local/stack.py down), rerun with "
                f"PULSE_STACK_TAKEOVER=1 to stop it automatically, or choose another port: "
                f"{var}=<port>."
            )
        by = f" by {listener[0]} (pid {listener[1]})" if listener else ""
        raise StackError(
            f"{part}: port {HOST}:{port} is already in use{by}, not by this stack "
            f"({stack.dir}). Stop that process, or choose another port: {var}=<port>."
        )


def spawn(
    stack: Stack,
    part: str,
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start a long-running process in its own session, output appended to its log."""
    stack.logs.mkdir(parents=True, exist_ok=True)
    stack.run.mkdir(parents=True, exist_ok=True)
    with open(stack.log(part), "ab") as log:
        log.write(f"\n==== {now_iso()} stack.py starts {part}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=cwd or stack.dir,
            env={**os.environ, **(env or {})},
        )
    stack.pidfile(part).write_text(f"{proc.pid}\n")
    return proc.pid


def terminate(stack: Stack, part: str, pid: int, *, sig: int = signal.SIGTERM) -> None:
    """Signal, wait, then SIGKILL the whole process group: nothing may be left behind."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + STOP_WAIT_S
    while time.monotonic() < deadline and is_ours(pid, stack):
        time.sleep(0.2)
    if is_ours(pid, stack):
        say(f"{part}: still running after {STOP_WAIT_S} s, sending SIGKILL")
    # the group also holds any child (nginx workers); killing an empty group is harmless
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and is_ours(pid, stack):
        time.sleep(0.1)


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            return "\n".join(fh.read().decode(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log yet)"


def wait_for(
    stack: Stack,
    part: str,
    probe: Callable[[], str | None],
    timeout_s: float,
    *,
    pid: int | None = None,
) -> None:
    """Poll ``probe`` (returns None when healthy, else why not) until healthy or timed out."""
    deadline = time.monotonic() + timeout_s
    why = "not probed yet"
    while True:
        try:
            why = probe() or ""
        except Exception as exc:  # any probe failure just means "not yet"
            why = f"{type(exc).__name__}: {exc}"
        if not why:
            return
        if pid is not None and not is_ours(pid, stack):
            raise StackError(
                f"{part}: the process exited during start-up ({why}).\n"
                f"  log: {stack.log(part)}\n--- last lines ---\n{log_tail(stack.log(part))}"
            )
        if time.monotonic() > deadline:
            raise StackError(
                f"{part}: not healthy after {timeout_s:.0f} s ({why}).\n"
                f"  log: {stack.log(part)}\n--- last lines ---\n{log_tail(stack.log(part))}"
            )
        time.sleep(0.25)


# --------------------------------------------------------------------------------------------
# Prerequisites


def apt_install(package: str, why: str) -> None:
    """Install a Debian package when we may (root + apt); otherwise name the fix."""
    fix = f"apt-get update && apt-get install -y {package}"
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise StackError(f"{why} is missing. Install it: sudo sh -c '{fix}'")
    say(f"stack: {why} is missing; installing Debian package {package} ...")
    r = subprocess.run(
        ["sh", "-c", f"{fix} >/dev/null"], env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    )
    if r.returncode != 0:
        raise StackError(
            f"{why} is missing and `{fix}` failed (exit {r.returncode}). Run it by hand."
        )


def java_bin() -> str:
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    fix = "apt-get install -y openjdk-17-jre-headless (or set JAVA_HOME to a JDK/JRE 17+)"
    if not java or not Path(java).exists():
        raise StackError(
            "Java 17+ is required for Kafka, Kafka Connect/Debezium 3.x and S3Proxy 4.x "
            f"and was not found. Fix: {fix}"
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    major = int(m.group(1)) if m else 0
    if major == 1 and m and m.group(2):
        major = int(m.group(2))
    if major < 17:
        raise StackError(
            f"Java 17+ is required, found {java} reporting "
            f"{out.splitlines()[0] if out else '?'}. Fix: {fix}"
        )
    return java


def nginx_bin() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )
    if not found:
        apt_install("nginx-light", "nginx")
        found = shutil.which("nginx") or "/usr/sbin/nginx"
    return found


def check_pg_bin(stack: Stack) -> None:
    if not (stack.pg_bin / "postgres").exists():
        if os.environ.get("PULSE_PG_BIN"):
            raise StackError(f"PULSE_PG_BIN={stack.pg_bin} has no `postgres` binary")
        apt_install("postgresql-15", f"PostgreSQL 15 ({stack.pg_bin})")


# --------------------------------------------------------------------------------------------
# Jars (Maven Central, through deploy/local/kafka/pom.xml)


def pom_digest() -> str:
    return hashlib.sha256((DEPLOY_LOCAL / "kafka" / "pom.xml").read_bytes()).hexdigest()


def ensure_jars(stack: Stack) -> None:
    marker = stack.jars / ".resolved"
    if marker.exists() and marker.read_text().strip() == pom_digest():
        return
    mvn = shutil.which("mvn")
    if not mvn:
        raise StackError(
            "Maven is required once to fetch the stack's jars from Maven Central and was "
            "not found. Fix: apt-get install -y maven"
        )
    say("jars: resolving Kafka, Connect, Debezium and S3Proxy from Maven Central (first run) ...")
    started = time.monotonic()
    # a changed pom may drop jars: start from empty directories
    for d in (stack.jars / "kafka", stack.jars / "s3proxy", stack.plugins):
        shutil.rmtree(d, ignore_errors=True)
    stack.logs.mkdir(parents=True, exist_ok=True)
    with open(stack.log("maven"), "ab") as log:
        r = subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(DEPLOY_LOCAL / "kafka" / "pom.xml"),
                f"-Dpulse.stack.dir={stack.cache_dir}",
                "generate-resources",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    if r.returncode != 0:
        raise StackError(
            f"jars: Maven failed (exit {r.returncode}).\n  log: {stack.log('maven')}\n"
            f"--- last lines ---\n{log_tail(stack.log('maven'))}"
        )
    marker.write_text(pom_digest() + "\n")
    say(f"jars: resolved in {time.monotonic() - started:.1f} s into {stack.jars}")


# --------------------------------------------------------------------------------------------
# PostgreSQL


def pg_user() -> str | None:
    """Postgres refuses to run as root: as root we run it as the `postgres` system user."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise StackError(
            "running as root needs the `postgres` system user (from the postgresql-15 package)"
        ) from None
    return "postgres"


def as_pg(argv: list[str]) -> list[str]:
    user = pg_user()
    return ["runuser", "-u", user, "--", *argv] if user else argv


def chown_pg(path: Path) -> None:
    user = pg_user()
    if not user:
        return
    info = pwd.getpwnam(user)
    os.chown(path, info.pw_uid, info.pw_gid)
    for root, dirs, files in os.walk(path):
        os.chown(root, info.pw_uid, info.pw_gid)
        for name in dirs + files:
            with contextlib.suppress(FileNotFoundError):
                os.lchown(os.path.join(root, name), info.pw_uid, info.pw_gid)


def psql(
    stack: Stack, *args: str, db: str = "postgres", sql: str | None = None
) -> subprocess.CompletedProcess[str]:
    argv = as_pg(
        [
            str(stack.pg_bin / "psql"),
            "-X",
            "-q",
            "-h",
            str(stack.pg_socket_dir),
            "-p",
            str(stack.ports["pg"]),
            "-U",
            "postgres",
            "-d",
            db,
            *args,
        ]
    )
    return subprocess.run(argv, input=sql, capture_output=True, text=True, cwd="/")


def check_pg_can_reach(stack: Stack) -> None:
    """As root the cluster runs as `postgres`, which must be able to traverse to .stack/pg."""
    if not pg_user():
        return
    r = subprocess.run(as_pg(["test", "-x", str(stack.pg_dir)]), capture_output=True, cwd="/")
    if r.returncode != 0:
        blocked = [
            str(p) for p in [*reversed(stack.pg_dir.parents)] if not os.stat(p).st_mode & 0o001
        ]
        raise StackError(
            f"postgres: the `postgres` user cannot reach {stack.pg_dir} (not traversable: "
            f"{', '.join(blocked) or '?'}). Fix: chmod o+x on those directories, or put the "
            "state elsewhere with PULSE_STACK_DIR=<dir under /tmp or /work>."
        )


def pg_initdb(stack: Stack, sec: Secrets) -> None:
    say(f"postgres: initdb {stack.pg_data}")
    stack.pg_dir.mkdir(parents=True, exist_ok=True)
    pwfile = stack.pg_dir / ".initdb-pw"
    pwfile.write_text(sec.pg_admin_password + "\n")
    pwfile.chmod(0o600)
    chown_pg(stack.pg_dir)
    r = subprocess.run(
        as_pg(
            [
                str(stack.pg_bin / "initdb"),
                "-D",
                str(stack.pg_data),
                "-U",
                "postgres",
                f"--pwfile={pwfile}",
                "-E",
                "UTF8",
                "--no-locale",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ]
        ),
        capture_output=True,
        text=True,
        cwd="/",
    )
    pwfile.unlink()
    if r.returncode != 0:
        shutil.rmtree(stack.pg_data, ignore_errors=True)
        hint = ""
        if "Permission denied" in r.stderr:
            hint = (
                f"\n  hint: the `postgres` user must be able to reach {stack.dir} "
                "(every parent directory needs o+x)"
            )
        raise StackError(f"postgres: initdb failed:\n{r.stdout}{r.stderr}{hint}")
    with open(stack.pg_data / "postgresql.conf", "a") as fh:
        fh.write(
            "\n# Pulse local stack settings (rewritten by stack.py on every up)\n"
            "include_if_exists = 'pulse.conf'\n"
        )


def start_postgres(stack: Stack, sec: Secrets) -> int | None:
    check_pg_bin(stack)
    if len(str(stack.pg_socket_dir)) > 90:
        raise StackError(
            f"postgres: socket path {stack.pg_socket_dir} is too long for a unix socket; "
            "use a shorter PULSE_STACK_DIR"
        )
    stack.pg_dir.mkdir(parents=True, exist_ok=True)
    check_pg_can_reach(stack)
    if not (stack.pg_data / "PG_VERSION").exists():
        pg_initdb(stack, sec)
    render_postgres_conf(stack)
    stack.pg_socket_dir.mkdir(parents=True, exist_ok=True)
    stack.pg_socket_dir.chmod(0o700)
    stack.logs.mkdir(parents=True, exist_ok=True)
    stack.log("postgres").touch()
    chown_pg(stack.pg_dir)
    chown_pg(stack.log("postgres"))
    # pg_ctl waits for the postmaster to accept connections (a stale postmaster.pid left by
    # a killed cluster is detected and ignored by postgres itself)
    r = subprocess.run(
        as_pg(
            [
                str(stack.pg_bin / "pg_ctl"),
                "-D",
                str(stack.pg_data),
                "-l",
                str(stack.log("postgres")),
                "-w",
                "-t",
                str(WAIT_S["postgres"]),
                "start",
            ]
        ),
        capture_output=True,
        text=True,
        cwd="/",
    )
    if r.returncode != 0:
        raise StackError(
            f"postgres: pg_ctl start failed: {r.stderr.strip() or r.stdout.strip()}\n"
            f"  log: {stack.log('postgres')}\n--- last lines ---\n{log_tail(stack.log('postgres'))}"
        )
    return part_pid(stack, "postgres")


def render_postgres_conf(stack: Stack) -> list[str]:
    """deploy/local/postgres's server config files into the data dir; the names of those
    that changed."""
    values = stack.template_vars()
    changed = []
    for name in ("pulse.conf", "pg_hba.conf"):
        if render(DEPLOY_LOCAL / "postgres" / name, stack.pg_data / name, values):
            chown_pg(stack.pg_data / name)
            changed.append(name)
    return changed


def refresh_postgres_conf(stack: Stack) -> str:
    """`up` on a running cluster: render the config files again and, if one changed, reload
    the server, so an edited setting applies without a restart. Returns a note for the
    status line, naming any changed setting that still needs one."""
    changed = render_postgres_conf(stack)
    if not changed:
        return ""
    pg_ctl = [str(stack.pg_bin / "pg_ctl"), "-D", str(stack.pg_data), "reload"]
    r = subprocess.run(as_pg(pg_ctl), capture_output=True, text=True, cwd="/")
    if r.returncode != 0:
        raise StackError(f"postgres: pg_ctl reload failed: {r.stderr.strip() or r.stdout}")
    # pg_file_settings reads the files now, so this does not race the reload's SIGHUP.
    pending = psql(
        stack, "-At", "-c",
        "SELECT string_agg(DISTINCT name, ', ') FROM pg_file_settings"
        " WHERE error = 'setting could not be applied'",
    ).stdout.strip()  # fmt: skip
    note = f"; {' and '.join(changed)} changed, reloaded"
    return note + (f" (restart postgres to apply {pending})" if pending else "")


def probe_postgres(stack: Stack) -> str | None:
    r = subprocess.run(
        [
            str(stack.pg_bin / "pg_isready"),
            "-q",
            "-h",
            HOST,
            "-p",
            str(stack.ports["pg"]),
            "-d",
            "postgres",
        ],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        return f"pg_isready exit {r.returncode}"
    if not is_running(stack, "postgres"):
        return f"something answers on {HOST}:{stack.ports['pg']} but it is not this stack's cluster"
    return None


def bootstrap_postgres(stack: Stack, sec: Secrets) -> None:
    r = psql(
        stack,
        "-v",
        f"pulse_password={sec.pg_password}",
        "-v",
        f"admin_password={sec.pg_admin_password}",
        "-f",
        "-",
        sql=(DEPLOY_LOCAL / "postgres" / "bootstrap.sql").read_text(),
    )
    if r.returncode != 0:
        raise StackError(f"postgres: bootstrap SQL failed:\n{r.stderr.strip()}")


def stop_postgres(stack: Stack) -> None:
    pid = part_pid(stack, "postgres")
    if not is_ours(pid, stack):
        return
    subprocess.run(
        as_pg(
            [
                str(stack.pg_bin / "pg_ctl"),
                "-D",
                str(stack.pg_data),
                "-m",
                "fast",
                "-w",
                "-t",
                str(STOP_WAIT_S),
                "stop",
            ]
        ),
        capture_output=True,
        text=True,
        cwd="/",
    )
    if pid and is_ours(pid, stack):
        terminate(stack, "postgres", pid, sig=signal.SIGINT)


def drop_slot(stack: Stack) -> None:
    """Drop Debezium's slot so a stopped stack retains no WAL (Connect must be stopped first)."""
    if not is_running(stack, "postgres"):
        return
    where = f"slot_name = '{SLOT_NAME}'"
    exists = psql(stack, "-At", "-c", f"SELECT count(*) FROM pg_replication_slots WHERE {where}")
    if exists.returncode == 0 and exists.stdout.strip() == "0":
        return
    sql = (
        "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
        f"WHERE {where} AND active_pid IS NOT NULL;"
        f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE {where};"
    )
    for _ in range(20):
        r = psql(stack, "-v", "ON_ERROR_STOP=1", "-c", sql)
        if r.returncode == 0:
            say(f"postgres: replication slot {SLOT_NAME} dropped (no WAL retained while down)")
            return
        time.sleep(0.5)  # the walsender can take a moment to release the slot
    say(f"postgres: could not drop slot {SLOT_NAME}: {r.stderr.strip()}")


# --------------------------------------------------------------------------------------------
# Kafka (KRaft) and Kafka Connect


def jvm_argv(stack: Stack, part: str, main: list[str]) -> list[str]:
    log4j = stack.dir / "kafka" / "log4j2.properties"
    return [
        java_bin(),
        *HEAP[part],
        *JVM_COMMON,
        f"-Dpulse.stack.part={part}",
        f"-Dpulse.stack.dir={stack.dir}/",  # is_ours() looks for this
        f"-Dlog4j2.configurationFile={log4j}",
        f"-Dkafka.logs.dir={stack.logs}",
        "-cp",
        f"{stack.jars / 'kafka'}/*",
        *main,
    ]


def openssl(*args: str) -> None:
    r = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise StackError(f"openssl {args[0]} failed:\n{r.stderr}")


def ensure_kafka_tls(stack: Stack, sec: Secrets) -> None:
    """A local CA and the broker's certificate (for 127.0.0.1 and localhost), made once: the
    CA (ca.pem) is what clients trust (KAFKA_SSL_CAFILE); the broker reads broker.p12."""
    tls = stack.kafka_tls_dir
    if (tls / "broker.p12").exists():
        return
    if shutil.which("openssl") is None:
        raise StackError("openssl not found: it makes the Kafka TLS listener's certificates")
    tls.mkdir(parents=True, exist_ok=True)
    tls.chmod(0o700)
    say("kafka: making a local CA and the broker's TLS certificate")
    ca_key, ca_pem = tls / "ca.key", tls / "ca.pem"
    key, csr, pem = tls / "broker.key", tls / "broker.csr", tls / "broker.pem"
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(ca_key))
    openssl(
        "req", "-x509", "-new", "-key", str(ca_key), "-sha256", "-days", "3650",
        "-subj", "/CN=Pulse local Kafka CA", "-out", str(ca_pem),
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(key))
    openssl("req", "-new", "-key", str(key), "-subj", f"/CN={HOST}", "-out", str(csr))
    ext = tls / "broker.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
    )
    openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca_pem), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "825", "-sha256", "-extfile", str(ext), "-out", str(pem),
    )  # fmt: skip
    # PKCS#12 rather than a PEM keystore: Kafka wants a PEM key encrypted, in a form the JDK
    # may not read; a .p12 from openssl 3 it reads.
    tmp = tls / "broker.p12.tmp"
    openssl(
        "pkcs12", "-export", "-in", str(pem), "-inkey", str(key), "-certfile", str(ca_pem),
        "-name", "broker", "-passout", f"pass:{sec.kafka_keystore_password}", "-out", str(tmp),
    )  # fmt: skip
    for path in tls.iterdir():
        path.chmod(0o600)
    ca_pem.chmod(0o644)  # the CA certificate is public: clients of any user read it
    tmp.replace(tls / "broker.p12")


def ensure_scram_user(stack: Stack, sec: Secrets) -> None:
    """Create (or update) the SCRAM-SHA-512 user of the TLS listener through the running
    broker, once per password: a marker in the data dir holds the password's hash, so a
    wiped cluster gets its user again and an unchanged one costs no JVM start."""
    marker = stack.dir / "kafka" / "data" / "pulse-scram-user"
    digest = hashlib.sha256(f"{SCRAM_USER}:{sec.kafka_scram_password}".encode()).hexdigest()
    if marker.exists() and marker.read_text().strip() == digest:
        return
    argv = jvm_argv(
        stack,
        "kafka",
        [
            "kafka.admin.ConfigCommand",
            "--bootstrap-server",
            f"{HOST}:{stack.ports['kafka']}",
            "--alter",
            "--add-config",
            f"{SCRAM_MECHANISM}=[iterations=8192,password={sec.kafka_scram_password}]",
            "--entity-type",
            "users",
            "--entity-name",
            SCRAM_USER,
        ],
    )
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        raise StackError(f"kafka: creating SCRAM user {SCRAM_USER} failed:\n{r.stdout}{r.stderr}")
    write_if_changed(marker, digest + "\n", mode=0o600)
    say(f"kafka: SCRAM user {SCRAM_USER} ({SCRAM_MECHANISM}) set for :{stack.ports['kafka_tls']}")


def start_kafka(stack: Stack, sec: Secrets) -> int:
    values = stack.template_vars()
    values["KAFKA_TLS_KEYSTORE_PASSWORD"] = sec.kafka_keystore_password
    ensure_kafka_tls(stack, sec)
    kdir = stack.dir / "kafka"
    render(DEPLOY_LOCAL / "kafka" / "server.properties", kdir / "server.properties", values)
    (kdir / "server.properties").chmod(0o600)  # holds the keystore password
    shutil.copyfile(DEPLOY_LOCAL / "kafka" / "log4j2.properties", kdir / "log4j2.properties")
    if not (kdir / "data" / "meta.properties").exists():
        say("kafka: formatting KRaft storage (first run)")
        argv = jvm_argv(
            stack,
            "kafka",
            [
                "kafka.tools.StorageTool",
                "format",
                # One token: an id starting with "-" must not read as an option.
                f"--cluster-id={sec.kafka_cluster_id}",
                "-c",
                str(kdir / "server.properties"),
                "--standalone",
                "--ignore-formatted",
            ],
        )
        r = subprocess.run(argv, capture_output=True, text=True)
        if r.returncode != 0:
            raise StackError(f"kafka: storage format failed:\n{r.stdout}{r.stderr}")
    return spawn(
        stack, "kafka", jvm_argv(stack, "kafka", ["kafka.Kafka", str(kdir / "server.properties")])
    )


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by broker")
        buf += chunk
    return buf


def kafka_request(sock: socket.socket, api_key: int, version: int, body: bytes) -> bytes:
    client_id = b"pulse-stack"
    header = struct.pack(">hhih", api_key, version, 1, len(client_id)) + client_id
    sock.sendall(struct.pack(">i", len(header) + len(body)) + header + body)
    (size,) = struct.unpack(">i", _recv_exact(sock, 4))
    return _recv_exact(sock, size)[4:]  # drop correlation id (response header v0)


def probe_kafka(stack: Stack) -> str | None:
    """ApiVersions, then Metadata: healthy once the broker lists itself (registered, unfenced)."""
    with socket.create_connection((HOST, stack.ports["kafka"]), timeout=3) as sock:
        resp = kafka_request(sock, 18, 0, b"")  # ApiVersions v0
        (error,) = struct.unpack(">h", resp[:2])
        if error:
            return f"ApiVersions error {error}"
        (n,) = struct.unpack(">i", resp[2:6])
        versions = {
            k: (lo, hi)
            for k, lo, hi in (struct.unpack(">hhh", resp[6 + 6 * i : 12 + 6 * i]) for i in range(n))
        }
        lo, hi = versions.get(3, (0, -1))
        if not lo <= 4 <= hi:
            return None  # no non-flexible Metadata to ask: ApiVersions answering is enough
        # Metadata v4: topics = [] (none), allow_auto_topic_creation = false
        resp = kafka_request(sock, 3, 4, struct.pack(">ib", 0, 0))
        (brokers,) = struct.unpack(">i", resp[4:8])
        return None if brokers > 0 else "broker not registered yet"


def connect_kafka_client(stack: Stack, sec: Secrets) -> dict[str, str]:
    """The Connect worker's bootstrap servers and Kafka security lines: the worker itself,
    and (prefixed) the producers, consumers and admin clients it makes for connectors, so the
    Debezium connector writes over the same listener."""
    if stack.connect_security == "PLAINTEXT":
        return {
            "CONNECT_BOOTSTRAP_SERVERS": f"{HOST}:{stack.ports['kafka']}",
            "CONNECT_KAFKA_SECURITY": "security.protocol=PLAINTEXT",
        }
    client = {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": SCRAM_MECHANISM,
        "sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{SCRAM_USER}" password="{sec.kafka_scram_password}";',
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(stack.kafka_tls_dir / "ca.pem"),
    }
    lines = [
        f"{prefix}{key}={value}"
        for prefix in ("", "producer.", "consumer.", "admin.")
        for key, value in client.items()
    ]
    return {
        "CONNECT_BOOTSTRAP_SERVERS": f"{HOST}:{stack.ports['kafka_tls']}",
        "CONNECT_KAFKA_SECURITY": "\n".join(lines),
    }


def start_connect(stack: Stack, sec: Secrets) -> int:
    values = stack.template_vars() | connect_kafka_client(stack, sec)
    cdir = stack.dir / "connect"
    render(
        DEPLOY_LOCAL / "kafka" / "connect-distributed.properties",
        cdir / "connect-distributed.properties",
        values,
    )
    (cdir / "connect-distributed.properties").chmod(0o600)  # may hold the SCRAM password
    (stack.dir / "kafka").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(
        DEPLOY_LOCAL / "kafka" / "log4j2.properties", stack.dir / "kafka" / "log4j2.properties"
    )
    # what deploy/debezium/pulse-postgres.json reads through ${env:...}
    env = {
        "PULSE_CDC_DB_HOST": HOST,
        "PULSE_CDC_DB_PORT": str(stack.ports["pg"]),
        "PULSE_CDC_DB_USER": DB_USER,
        "PULSE_CDC_DB_PASSWORD": sec.pg_password,
        "PULSE_CDC_DB_NAME": DB_NAME,
    }
    return spawn(
        stack,
        "connect",
        jvm_argv(
            stack,
            "connect",
            [
                "org.apache.kafka.connect.cli.ConnectDistributed",
                str(cdir / "connect-distributed.properties"),
            ],
        ),
        env=env,
    )


def http_json(
    method: str, url: str, body: object | None = None, timeout: float = 5
) -> tuple[int, object]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            return err.code, json.loads(raw)
        except ValueError:
            return err.code, raw.decode(errors="replace")


def probe_connect(stack: Stack) -> str | None:
    base = f"http://{HOST}:{stack.ports['connect']}"
    status, body = http_json("GET", f"{base}/connector-plugins")
    if status != 200 or not isinstance(body, list):
        return f"GET /connector-plugins -> {status}"
    if not any(p.get("class", "").endswith("PostgresConnector") for p in body):
        return f"Debezium PostgresConnector not among plugins (plugin.path {stack.plugins})"
    return None


def connector_spec() -> tuple[str, dict[str, str]]:
    spec = json.loads(CONNECTOR_FILE.read_text())
    return spec["name"], spec["config"]


def register_connector(stack: Stack) -> str:
    """PUT the config when it differs from what Connect holds; an unchanged one is left alone."""
    base = f"http://{HOST}:{stack.ports['connect']}"
    name, config = connector_spec()
    status, current = http_json("GET", f"{base}/connectors/{name}/config")
    if (
        status == 200
        and isinstance(current, dict)
        and {k: v for k, v in current.items() if k != "name"} == config
    ):
        return "unchanged"
    deadline = time.monotonic() + WAIT_S["connector"]
    while True:
        status, body = http_json("PUT", f"{base}/connectors/{name}/config", config, timeout=30)
        if status in (200, 201):
            return "created" if status == 201 else "updated"
        # 409: a rebalance is in progress right after start-up; retry
        if status not in (409, 500, 503) or time.monotonic() > deadline:
            raise StackError(
                f"connect: registering {name} failed: HTTP {status} {body}\n"
                f"  log: {stack.log('connect')}"
            )
        time.sleep(1)


def probe_connector(stack: Stack) -> str | None:
    base = f"http://{HOST}:{stack.ports['connect']}"
    name, _ = connector_spec()
    status, body = http_json("GET", f"{base}/connectors/{name}/status")
    if status != 200 or not isinstance(body, dict):
        return f"GET /connectors/{name}/status -> {status}"
    states = [body["connector"]["state"]] + [t["state"] for t in body.get("tasks", [])]
    if not body.get("tasks"):
        return f"connector {states[0]}, no task yet"
    if "FAILED" in states:
        trace = next(
            (
                t.get("trace", "")
                for t in [body["connector"], *body["tasks"]]
                if t.get("state") == "FAILED"
            ),
            "",
        )
        raise StackError(
            f"connect: connector {name} FAILED:\n{trace[:3000]}\n  log: {stack.log('connect')}"
        )
    if set(states) != {"RUNNING"}:
        return f"states {states}"
    # REST status can be stale right after a worker restart: the slot being streamed is not
    return None if slot_active(stack) else f"connector RUNNING but slot {SLOT_NAME} not active yet"


def slot_active(stack: Stack) -> bool:
    r = psql(
        stack,
        "-At",
        "-c",
        f"SELECT active FROM pg_replication_slots WHERE slot_name = '{SLOT_NAME}'",
    )
    return r.returncode == 0 and r.stdout.strip() == "t"


def restart_failed_connector(stack: Stack) -> None:
    base = f"http://{HOST}:{stack.ports['connect']}"
    name, _ = connector_spec()
    status, body = http_json("GET", f"{base}/connectors/{name}/status")
    if status == 200 and isinstance(body, dict):
        states = [body["connector"]["state"]] + [t["state"] for t in body.get("tasks", [])]
        if "FAILED" in states:
            say(f"connect: {name} was FAILED; restarting it")
            http_json("POST", f"{base}/connectors/{name}/restart?includeTasks=true&onlyFailed=true")


# --------------------------------------------------------------------------------------------
# S3Proxy


def start_s3proxy(stack: Stack, sec: Secrets) -> int:
    values = {
        **stack.template_vars(),
        "S3_ACCESS_KEY": sec.s3_access_key,
        "S3_SECRET_KEY": sec.s3_secret_key,
    }
    props = stack.dir / "s3proxy" / "s3proxy.properties"
    render(DEPLOY_LOCAL / "s3proxy" / "s3proxy.properties", props, values)
    props.chmod(0o600)
    (stack.dir / "s3").mkdir(parents=True, exist_ok=True)
    argv = [
        java_bin(),
        *HEAP["s3proxy"],
        *JVM_COMMON,
        "-Dpulse.stack.part=s3proxy",
        f"-Dpulse.stack.dir={stack.dir}/",
        "-jar",
        str(stack.jars / "s3proxy" / "s3proxy.jar"),
        "--properties",
        str(props),
    ]
    return spawn(stack, "s3proxy", argv)


def s3_request(
    stack: Stack, sec: Secrets, method: str, path: str, body: bytes = b""
) -> tuple[int, bytes]:
    """One SigV4-signed path-style request (enough for ListBuckets/HEAD/PUT bucket)."""
    now = datetime.datetime.now(datetime.UTC)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    host = f"{HOST}:{stack.ports['s3']}"
    payload_hash = hashlib.sha256(body).hexdigest()
    signed = "host;x-amz-content-sha256;x-amz-date"
    canonical = "\n".join(
        [
            method,
            path,
            "",
            f"host:{host}\nx-amz-content-sha256:{payload_hash}\nx-amz-date:{amz_date}\n",
            signed,
            payload_hash,
        ]
    )
    scope = f"{day}/{AWS_REGION}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = ("AWS4" + sec.s3_secret_key).encode()
    for part in (day, AWS_REGION, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers = {
        "Host": host,
        "x-amz-date": amz_date,
        "x-amz-content-sha256": payload_hash,
        "Authorization": (
            f"AWS4-HMAC-SHA256 Credential={sec.s3_access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}"
        ),
    }
    conn = http.client.HTTPConnection(HOST, stack.ports["s3"], timeout=5)
    try:
        conn.request(method, path, body=body or None, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def probe_s3proxy(stack: Stack, sec: Secrets) -> str | None:
    status, body = s3_request(stack, sec, "GET", "/")  # ListBuckets, signed: checks credentials too
    return None if status == 200 else f"ListBuckets -> HTTP {status} {body[:200]!r}"


def ensure_bucket(stack: Stack, sec: Secrets) -> None:
    status, _ = s3_request(stack, sec, "HEAD", f"/{S3_BUCKET}")
    if status == 200:
        return
    status, body = s3_request(stack, sec, "PUT", f"/{S3_BUCKET}")
    if status != 200:
        raise StackError(
            f"s3proxy: creating bucket {S3_BUCKET} failed: HTTP {status} {body[:300]!r}"
        )
    say(f"s3proxy: bucket {S3_BUCKET} created")


# --------------------------------------------------------------------------------------------
# nginx


def render_nginx(
    prefix: Path,
    *,
    listen_port: int,
    ingest_port: int,
    query_port: int,
    notifier_port: int = PORT_VARS["notifier"][1],
    dashboard_port: int = PORT_VARS["dashboard"][1],
    conf_text: str | None = None,
) -> Path:
    """Lay out an nginx prefix: conf/ (shared nginx.conf + local env files) and its temp dirs.

    Also used by the tests to run a private nginx on other ports.  Returns the nginx.conf path.
    """
    conf_dir = prefix / "conf"
    conf_dir.mkdir(parents=True, exist_ok=True)
    text = conf_text if conf_text is not None else (DEPLOY_NGINX / "nginx.conf").read_text()
    write_if_changed(conf_dir / "nginx.conf", text)
    values = {
        "HOST": HOST,
        "NGINX_PORT": str(listen_port),
        "INGEST_PORT": str(ingest_port),
        "QUERY_PORT": str(query_port),
        "NOTIFIER_PORT": str(notifier_port),
        "DASHBOARD_PORT": str(dashboard_port),
    }
    for name in (
        "listen.conf",
        "upstream-ingest.conf",
        "upstream-query.conf",
        "upstream-notifier.conf",
        "upstream-dashboard.conf",
    ):
        render(DEPLOY_NGINX / "env" / "local" / name, conf_dir / name, values)
    return conf_dir / "nginx.conf"


def nginx_check(prefix: Path, conf: Path) -> None:
    r = subprocess.run(
        [nginx_bin(), "-t", "-q", "-p", f"{prefix}/", "-c", str(conf)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        raise StackError(f"nginx: configuration test failed:\n{r.stderr.strip()}")


def reload_nginx_if_changed(
    prefix: Path,
    *,
    listen_port: int,
    ingest_port: int,
    query_port: int,
    dashboard_port: int = PORT_VARS["dashboard"][1],
    conf_text: str | None = None,
) -> bool:
    """A running nginx: render its files again and, if one changed, test them and reload
    (`nginx -s reload`: new workers take the new config, open connections finish on the
    old), so a pulled change such as a new location applies without a restart. True if it
    reloaded. A config that fails `nginx -t` raises and leaves the running nginx as it was."""
    conf_dir = prefix / "conf"
    before = {f.name: f.read_bytes() for f in conf_dir.glob("*.conf")}
    conf = render_nginx(
        prefix,
        listen_port=listen_port,
        ingest_port=ingest_port,
        query_port=query_port,
        dashboard_port=dashboard_port,
        conf_text=conf_text,
    )
    if {f.name: f.read_bytes() for f in conf_dir.glob("*.conf")} == before:
        return False
    nginx_check(prefix, conf)
    r = subprocess.run(
        [nginx_bin(), "-p", f"{prefix}/", "-c", str(conf), "-s", "reload"],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        raise StackError(f"nginx: reload failed: {r.stderr.strip() or r.stdout}")
    return True


def refresh_nginx_conf(stack: Stack) -> str:
    """`up` on a running nginx: see reload_nginx_if_changed. A note for the status line."""
    p = stack.ports
    changed = reload_nginx_if_changed(
        stack.dir / "nginx",
        listen_port=p["nginx"],
        ingest_port=p["ingest"],
        query_port=p["query"],
        dashboard_port=p["dashboard"],
    )
    return "; its config changed, reloaded" if changed else ""


def start_nginx(stack: Stack, sec: Secrets) -> int:
    prefix = stack.dir / "nginx"
    p = stack.ports
    conf = render_nginx(
        prefix,
        listen_port=p["nginx"],
        ingest_port=p["ingest"],
        query_port=p["query"],
        notifier_port=p["notifier"],
        dashboard_port=p["dashboard"],
    )
    nginx_check(prefix, conf)
    return spawn(
        stack, "nginx", [nginx_bin(), "-p", f"{prefix}/", "-c", str(conf), "-g", "daemon off;"]
    )


def probe_http(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return None if resp.status == 200 else f"GET {url} -> {resp.status}"
    except urllib.error.HTTPError as err:
        return f"GET {url} -> {err.code}"


# --------------------------------------------------------------------------------------------
# Commands


@dataclass
class Timer:
    started: float = field(default_factory=time.monotonic)

    def __str__(self) -> str:
        return f"{time.monotonic() - self.started:.1f} s"


def expand_parts(names: list[str], *, with_requirements: bool) -> list[str]:
    unknown = [n for n in names if n not in PARTS]
    if unknown:
        raise StackError(f"unknown part(s) {', '.join(unknown)}; parts are: {', '.join(PARTS)}")
    chosen = set(names or PARTS)
    if with_requirements:
        for name in list(chosen):
            chosen.update(REQUIRES.get(name, ()))
    return [p for p in PARTS if p in chosen]


def cmd_up(stack: Stack, names: list[str]) -> None:
    total = Timer()
    parts = expand_parts(names, with_requirements=True)
    stack.dir.mkdir(parents=True, exist_ok=True)
    sec = Secrets.load(stack)
    if any(p in JVM_PARTS for p in parts):
        java_bin()
        ensure_jars(stack)
    if "nginx" in parts:
        nginx_bin()
    reserve_stack_ports(stack)

    starts = {
        "postgres": start_postgres,
        "kafka": start_kafka,
        "s3proxy": start_s3proxy,
        "nginx": start_nginx,
        "connect": start_connect,
    }
    pids: dict[str, int | None] = {}
    timers: dict[str, Timer] = {}

    def launch(part: str) -> None:
        if is_running(stack, part):
            refresh = {"postgres": refresh_postgres_conf, "nginx": refresh_nginx_conf}
            note = refresh[part](stack) if part in refresh else ""
            say(f"{part:9} {stack.address(part):45} already running{note}")
            return
        check_ports_free(stack, part)
        timers[part] = Timer()
        pids[part] = starts[part](stack, sec)

    # Start independent parts together (their JVM start-ups overlap), then wait for each.
    for part in ("postgres", "kafka", "s3proxy", "nginx"):
        if part in parts:
            launch(part)

    def healthy(part: str, probe: Callable[[], str | None]) -> None:
        wait_for(stack, part, probe, WAIT_S[part], pid=pids.get(part))
        if part in timers:
            say(f"{part:9} {stack.address(part):45} started, healthy in {timers[part]}")

    if "postgres" in parts:
        healthy("postgres", lambda: probe_postgres(stack))
        bootstrap_postgres(stack, sec)
    if "kafka" in parts:
        healthy("kafka", lambda: probe_kafka(stack))
        ensure_scram_user(stack, sec)
    if "connect" in parts:
        launch("connect")
    if "s3proxy" in parts:
        healthy("s3proxy", lambda: probe_s3proxy(stack, sec))
        ensure_bucket(stack, sec)
    if "nginx" in parts:
        healthy("nginx", lambda: probe_http(f"http://{HOST}:{stack.ports['nginx']}/nginx/healthz"))
    if "connect" in parts:
        healthy("connect", lambda: probe_connect(stack))
        restart_failed_connector(stack)
        outcome = register_connector(stack)
        t = Timer()
        wait_for(
            stack,
            "connect",
            lambda: probe_connector(stack),
            WAIT_S["connector"],
            pid=part_pid(stack, "connect"),
        )
        say(
            f"{'debezium':9} {'connector pulse-postgres, slot ' + SLOT_NAME:45} "
            f"{outcome}, RUNNING after {t}"
        )

    write_env(stack, sec)
    say(f"stack up in {total}; env: {stack.env_file}")


def stop_part(stack: Stack, part: str) -> bool:
    pid = part_pid(stack, part)
    if not is_ours(pid, stack):
        stack.pidfile(part).unlink(missing_ok=True)
        return False
    t = Timer()
    if part == "postgres":
        stop_postgres(stack)
    elif part == "nginx":
        assert pid
        terminate(stack, part, pid, sig=signal.SIGQUIT)  # graceful: finish in-flight requests
    else:
        assert pid
        terminate(stack, part, pid)
    stack.pidfile(part).unlink(missing_ok=True)
    say(f"{part:9} stopped in {t}")
    return True


def cmd_down(stack: Stack, names: list[str], *, drop_slot_too: bool) -> None:
    parts = expand_parts(names, with_requirements=False)
    # reverse dependency order; Connect must be gone before its slot can be dropped
    order = ["nginx", "connect", "kafka", "s3proxy", "postgres"]
    for part in order:
        if part in parts:
            stop_part(stack, part)
        if part == "connect" and drop_slot_too:
            drop_slot(stack)
    say("stack down" if not names else f"stopped: {', '.join(parts)}")


def cmd_restart(stack: Stack, names: list[str]) -> None:
    if not names:
        raise StackError("restart needs part names, e.g. `stack.py restart s3proxy`")
    cmd_down(stack, names, drop_slot_too=False)
    cmd_up(stack, names)


def cmd_status(stack: Stack) -> int:
    down = 0
    say(f"stack dir: {stack.dir}")
    for part in PARTS:
        pid = part_pid(stack, part)
        up = is_ours(pid, stack)
        down += not up
        say(f"  {part:9} {stack.address(part):55} {'up   pid ' + str(pid) if up else 'down'}")
    if is_running(stack, "connect"):
        try:
            why = probe_connector(stack)
            say(f"  {'debezium':9} {'connector pulse-postgres':55} {why or 'RUNNING'}")
        except StackError as err:
            say(
                f"  {'debezium':9} {'connector pulse-postgres':55} "
                f"FAILED ({str(err).splitlines()[0]})"
            )
        except Exception as exc:  # status is informative only
            say(f"  {'debezium':9} {'connector pulse-postgres':55} unknown ({exc})")
    say(f"  env: {stack.env_file if stack.env_file.exists() else '(not written yet: run up)'}")
    return 1 if down else 0


def cmd_logs(stack: Stack, part: str | None, lines: int, follow: bool) -> None:
    names = [part] if part else [*PARTS, "maven"]
    if follow:
        if not part:
            raise StackError("logs -f needs one part")
        os.execvp("tail", ["tail", "-n", str(lines), "-F", str(stack.log(part))])
    for name in names:
        path = stack.log(name)
        if path.exists():
            say(f"==> {path} <==\n{log_tail(path, lines)}\n")


def cmd_env(stack: Stack) -> None:
    sys.stdout.write(env_lines(stack, Secrets.load(stack)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="stack.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start what is not running and wait until healthy")
    up.add_argument("parts", nargs="*", metavar="PART")
    down = sub.add_parser(
        "down", help="stop; a full down drops the Debezium replication slot first"
    )
    down.add_argument("parts", nargs="*", metavar="PART")
    down.add_argument(
        "--keep-slot", action="store_true", help="do not drop the Debezium replication slot"
    )
    restart = sub.add_parser("restart", help="stop then start the named parts")
    restart.add_argument("parts", nargs="+", metavar="PART")
    sub.add_parser("status", help="each part, its address, up/down (exit 1 if any is down)")
    logs = sub.add_parser("logs", help="tail the logs")
    logs.add_argument("part", nargs="?", choices=[*PARTS, "maven"])
    logs.add_argument("-n", "--lines", type=int, default=40)
    logs.add_argument("-f", "--follow", action="store_true")
    sub.add_parser("env", help="print the env lines (endpoints and credentials)")
    args = parser.parse_args(argv)

    try:
        stack = Stack.from_env()
        if args.command == "up":
            with stack_lock(stack):
                cmd_up(stack, args.parts)
        elif args.command == "down":
            with stack_lock(stack):
                cmd_down(stack, args.parts, drop_slot_too=not args.parts and not args.keep_slot)
        elif args.command == "restart":
            with stack_lock(stack):
                cmd_restart(stack, args.parts)
        elif args.command == "status":
            return cmd_status(stack)
        elif args.command == "logs":
            cmd_logs(stack, args.part, args.lines, args.follow)
        elif args.command == "env":
            cmd_env(stack)
    except StackError as err:
        fail(str(err))
    except KeyboardInterrupt:
        return 130
    return 0


def fail(msg: str) -> NoReturn:
    print(f"stack: FAILED: {msg}", file=sys.stderr, flush=True)
    raise SystemExit(1)


if __name__ == "__main__":
    sys.exit(main())
