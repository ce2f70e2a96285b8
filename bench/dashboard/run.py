"""Dashboard fan-out: one dashboard process, N concurrent SSE clients (markets view of 20
symbols), fed R forming-candle updates a second from Kafka; against a bare asyncio fan-out
(`_bare_fanout.py`) fed the same way, in the same run.

`uv run python bench/dashboard/run.py [--quick] [--clients N] [--rate R] [--seconds S]`
(reads .stack/env). Figures:
- frames delivered per second to the clients, dashboard / bare fan-out (target >= 0.7x);
- Kafka record -> client receipt p99 (the record's event_time is its send time; target <=
  the coalescing interval + 100 ms), on every 10th client;
- memory per idle client: the dashboard's RSS growth over N connected, idle clients / N
  (target <= 50 KB);
- with a tenth of the clients not reading for a while: the longest client queue the dashboard
  reports (`pulse_dashboard_client_queue_max_keys`, target <= DASHBOARD_CLIENT_QUEUE_MAX_KEYS)
  and its RSS growth over that time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from contracts.topics import PARTITIONS
from pulse_cli.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
PORTS = range(61550, 61600)  # the dashboard's bench ports (its tests use 61500-61549 first)
KEY = "bench-viewer-key-" + uuid.uuid4().hex[:8]
SYMBOLS = [f"C{n:02d}-USD" for n in range(10)] + [f"EQ{n:02d}" for n in range(10)]
INTERVAL_S = 0.25
MAX_KEYS = 512
STALL_TIMEOUT_S = 5
AT = re.compile(rb'"(?:at|event_time)":"([^"]+)"')


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def forming_record(symbol: str, n: int, now: datetime) -> bytes:
    minute = now.replace(second=0, microsecond=0)
    price = f"{100 + (n % 997) / 10:.2f}"
    # A forming candle with fewer trades than the one held is a reordered older one and is
    # ignored: the count grows with time, across the benchmark's phases.
    trades = time.monotonic_ns() // 1000
    return orjson.dumps(
        {
            "symbol": symbol,
            "asset_class": "crypto" if symbol.endswith("-USD") else "equity",
            "window_start": minute.isoformat(),
            "window_end": (minute + timedelta(minutes=1)).isoformat(),
            "open": price,
            "high": price,
            "low": price,
            "close": price,
            "volume": str(n),
            "vwap": price,
            "trade_count": trades,
            "event_time": now.isoformat(),
            "emitted_at": now.isoformat(),
        }
    )


class Clients:
    """N SSE clients on raw asyncio streams: count frames; every 10th parses latencies."""

    def __init__(self) -> None:
        self.frames = 0
        self.snapshots = 0
        self.latencies_ms: list[float] = []
        self.measuring = False
        self.writers: list[asyncio.StreamWriter] = []
        self.small_writers: list[asyncio.StreamWriter] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def one(
        self, port: int, path: str, *, probe: bool, started: asyncio.Event, small: bool = False
    ) -> None:
        sock = socket.socket()
        if small:
            # A small receive window: once this client stops reading, the server's socket
            # backs up within seconds (loopback buffers would otherwise absorb minutes).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
        self.writers.append(writer)
        if small:
            self.small_writers.append(writer)
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: bench\r\nX-API-Key: {KEY}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert b" 200 " in head.split(b"\r\n", 1)[0], head
        buffer = b""
        got_snapshot = False
        while True:
            data = await reader.read(1 << 16)
            if not data:
                return
            if not got_snapshot and b"event: snapshot" in data:
                got_snapshot = True
                self.snapshots += 1
                started.set()
            self.frames += data.count(b"event: delta")
            if probe and self.measuring:
                buffer += data
                *blocks, buffer = buffer.split(b"\n\n")
                now = datetime.now(UTC)
                for block in blocks:
                    if b"event: delta" in block:
                        match = AT.search(block)
                        if match:
                            sent = datetime.fromisoformat(match.group(1).decode())
                            self.latencies_ms.append((now - sent).total_seconds() * 1000)
            elif probe:
                buffer = b""

    async def connect(self, port: int, path: str, n: int, *, small_first: int = 0) -> None:
        for start in range(0, n, 100):  # in steps: the listen backlog stays small
            events = []
            for i in range(start, min(n, start + 100)):
                started = asyncio.Event()
                events.append(started)
                one = self.one(
                    port, path, probe=i % 10 == 0, started=started, small=i < small_first
                )
                self.tasks.append(asyncio.create_task(one))
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), 60)

    def stop_reading(self) -> None:
        """The clients connected with a small receive window stop reading."""
        for writer in self.small_writers:
            writer.transport.pause_reading()  # type: ignore[attr-defined]  # a socket transport

    def resume_reading(self) -> None:
        for writer in self.writers:
            with contextlib.suppress(Exception):
                writer.transport.resume_reading()  # type: ignore[attr-defined]

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for writer in self.writers:
            writer.close()


async def feed(bootstrap: str, topic: str, rate: int, stop: asyncio.Event) -> int:
    """`rate` forming candles a second, round robin over the symbols, in 10 ms steps."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks=1)
    await producer.start()
    sent = 0
    per_step = max(1, rate // 100)
    start = time.monotonic()
    try:
        while not stop.is_set():
            now = datetime.now(UTC)
            for _ in range(per_step):
                symbol = SYMBOLS[sent % len(SYMBOLS)]
                await producer.send(topic, forming_record(symbol, sent, now), key=symbol.encode())
                sent += 1
            due = start + sent / rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        await producer.flush()
    finally:
        await producer.stop()
    return sent


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure_load(
    port: int, path: str, *, n: int, bootstrap: str, topic: str, rate: int, seconds: float
) -> dict[str, Any]:
    clients = Clients()
    await clients.connect(port, path, n)
    stop = asyncio.Event()
    feeder = asyncio.create_task(feed(bootstrap, topic, rate, stop))
    await asyncio.sleep(3.0)  # warm-up: not counted
    clients.measuring = True
    frames0, t0 = clients.frames, time.monotonic()
    await asyncio.sleep(seconds)
    frames1, t1 = clients.frames, time.monotonic()
    clients.measuring = False
    stop.set()
    sent = await feeder
    await clients.close()
    return {
        "frames_per_s": (frames1 - frames0) / (t1 - t0),
        "p50_ms": percentile(clients.latencies_ms, 0.50),
        "p99_ms": percentile(clients.latencies_ms, 0.99),
        "samples": len(clients.latencies_ms),
        "records_sent": sent,
    }


async def metric(port: int, name: str) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
    body = (await reader.read()).decode()
    writer.close()
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", body, re.M)
    return float(match.group(1)) if match else float("nan")


def start_dashboard(port: int, topic: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = open(Path("/tmp") / f"pulse-bench-dashboard-{port}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "dashboard"],
        env={
            **env,
            "DASHBOARD_HTTP_PORT": str(port),
            "DASHBOARD_VIEWER_KEYS": KEY,
            "DASHBOARD_LIVE_CANDLES_TOPIC": topic,
            "DASHBOARD_CANDLES_TOPIC": topic + ".closed",
            "DASHBOARD_ALERTS_TOPIC": topic + ".alerts",
            "DASHBOARD_REVIEWS_TOPIC": topic + ".reviews",
            "DASHBOARD_MAX_CLIENTS": "5000",
            "DASHBOARD_COALESCE_INTERVAL_S": str(INTERVAL_S),
            "DASHBOARD_CLIENT_QUEUE_MAX_KEYS": str(MAX_KEYS),
            # so the stuck tenth is dropped within the slow phase (default 30 s)
            "DASHBOARD_CLIENT_STALL_TIMEOUT_S": str(STALL_TIMEOUT_S),
            "DASHBOARD_LOG_JSON": "false",
            "DASHBOARD_LOG_LEVEL": "WARNING",
        },
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_http(port, "/readyz", proc)
    return proc


def wait_http(port: int, path: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"process exited {proc.returncode}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n".encode())
                if b" 200 " in s.recv(100):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"nothing answered on {port}{path}")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


async def topics_admin(bootstrap: str, names: list[str], *, create: bool) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if create:
            await admin.create_topics(
                [NewTopic(n, num_partitions=PARTITIONS, replication_factor=1) for n in names]
            )
        else:
            await admin.delete_topics(names)
    finally:
        await admin.close()


async def run(clients_n: int, rate: int, seconds: float) -> dict[str, Any]:
    env = dict(os.environ)
    bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:59092")
    topic = f"bench.dashboard.{uuid.uuid4().hex[:8]}.live"
    names = [topic, topic + ".closed", topic + ".alerts", topic + ".reviews"]
    await topics_admin(bootstrap, names, create=True)
    path = "/dashboard/stream?views=markets&symbols=" + ",".join(SYMBOLS)
    load = os.getloadavg()
    out: dict[str, Any] = {"clients": clients_n, "rate": rate, "seconds": seconds}

    async def same_load(port: int) -> dict[str, Any]:
        """The load both sides get: the same clients, the same feed."""
        return await measure_load(
            port, path, n=clients_n, bootstrap=bootstrap, topic=topic, rate=rate, seconds=seconds
        )

    try:
        # 1. the dashboard: idle memory, then under load, then with a tenth not reading
        port = free_port(PORTS)
        dash = start_dashboard(port, topic, env)
        try:
            stop = asyncio.Event()
            warm = asyncio.create_task(feed(bootstrap, topic, 200, stop))
            await asyncio.sleep(2.0)  # every symbol has a forming candle in the state
            stop.set()
            await warm
            await asyncio.sleep(1.0)
            rss0 = rss_kb(dash.pid)
            idle = Clients()
            await idle.connect(port, path, clients_n)
            await asyncio.sleep(2.0)
            rss1 = rss_kb(dash.pid)
            out["idle_kb_per_client"] = (rss1 - rss0) / clients_n
            await idle.close()
            await asyncio.sleep(1.0)
            out["dashboard"] = await same_load(port)
            await asyncio.sleep(1.0)
            # at least 12 s: a stuck socket takes a few seconds to back up, then the stall
            # timeout runs (so --quick shows the bound too)
            out["slow"] = await slow_readers(
                port, path, clients_n, bootstrap, topic, rate, max(seconds, 12.0), dash.pid
            )
        finally:
            stop_process(dash)
        # 2. the bare fan-out, same clients, same feed
        port = free_port(PORTS)
        bare = subprocess.Popen(  # noqa: ASYNC220  # started once, before the clients
            [
                sys.executable,
                str(Path(__file__).with_name("_bare_fanout.py")),
                str(port),
                topic,
                str(INTERVAL_S),
            ],
            env=env,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            assert bare.stdout is not None
            await asyncio.get_running_loop().run_in_executor(None, bare.stdout.readline)
            out["bare"] = await same_load(port)
        finally:
            stop_process(bare)
    finally:
        await topics_admin(bootstrap, names, create=False)
    out["load_before"] = [round(x, 2) for x in load]
    out["load_after"] = [round(x, 2) for x in os.getloadavg()]
    out["date"] = datetime.now(UTC).isoformat(timespec="seconds")
    return out


async def slow_readers(
    port: int, path: str, n: int, bootstrap: str, topic: str, rate: int, seconds: float, pid: int
) -> dict[str, Any]:
    clients = Clients()
    await clients.connect(port, path, n, small_first=n // 10)
    clients.stop_reading()
    stop = asyncio.Event()
    feeder = asyncio.create_task(feed(bootstrap, topic, rate, stop))
    rss_start = rss_kb(pid)
    longest, rss_max = 0.0, rss_start
    frames0, t0 = clients.frames, time.monotonic()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        longest = max(longest, await metric(port, "pulse_dashboard_client_queue_max_keys"))
        rss_max = max(rss_max, rss_kb(pid))
    frames_per_s = (clients.frames - frames0) / (time.monotonic() - t0)
    stop.set()
    await feeder
    resyncs = await metric(port, "pulse_dashboard_resyncs_total")
    dropped = await metric(port, "pulse_dashboard_dropped_clients_total")
    await clients.close()
    return {
        "stuck_clients": len(clients.small_writers),
        "dropped": dropped,
        "queue_max_keys": longest,
        "rss_growth_kb": rss_max - rss_start,
        "frames_per_s_readers": frames_per_s,
        "resyncs": resyncs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    if args.quick:
        args.clients, args.seconds = 100, 4.0
    out = asyncio.run(run(args.clients, args.rate, args.seconds))
    print(json.dumps(out, indent=2), file=sys.stderr)
    d, b, slow = out["dashboard"], out["bare"], out["slow"]
    ratio = d["frames_per_s"] / b["frames_per_s"] if b["frames_per_s"] else None
    budget_ms = INTERVAL_S * 1000 + 100
    load = f"{out['clients']} clients x 20 symbols, {out['rate']} updates/s"
    figures = [
        {
            "name": f"dashboard frames delivered/s ({load})",
            "value": round(d["frames_per_s"]),
            "unit": "frames/s",
            "baseline": round(b["frames_per_s"]),
            "ratio": None if ratio is None else round(ratio, 3),
            "target": ">= 0.7x bare fan-out",
            "pass": ratio is not None and ratio >= 0.7,
        },
        {
            "name": "dashboard Kafka record -> client p99",
            "value": round(d["p99_ms"], 1),
            "unit": "ms",
            "baseline": round(b["p99_ms"], 1),
            "ratio": round(d["p99_ms"] / b["p99_ms"], 3) if b["p99_ms"] else None,
            "target": f"p99 <= {budget_ms:.0f} ms (coalescing {INTERVAL_S * 1000:.0f} ms + 100)",
            "pass": d["p99_ms"] <= budget_ms,
        },
        {
            "name": "dashboard memory per idle client",
            "value": round(out["idle_kb_per_client"], 1),
            "unit": "KB",
            "baseline": None,
            "ratio": None,
            "target": "<= 50 KB",
            "pass": out["idle_kb_per_client"] <= 50,
        },
        {
            "name": "dashboard longest client queue, a tenth of clients not reading",
            "value": slow["queue_max_keys"],
            "unit": "keys",
            "baseline": None,
            "ratio": None,
            "target": (
                f"<= {MAX_KEYS} (bounded); RSS growth {slow['rss_growth_kb']} KB; "
                f"{slow['dropped']:.0f} of {slow['stuck_clients']} stuck clients dropped after "
                f"{STALL_TIMEOUT_S} s blocked"
            ),
            "pass": slow["queue_max_keys"] <= MAX_KEYS,
        },
    ]
    print(json.dumps({"figures": figures}))


if __name__ == "__main__":
    main()
