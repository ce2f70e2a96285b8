"""Harness of the dashboard's integration tests: a dashboard subprocess on the dashboard port
range (61500–61599) reading unique topics on the real Kafka, a producer of contract records,
a private nginx running the project's nginx.conf, an SSE reader. (A module of its own, not
`conftest`: several test folders have a conftest.py, and `from conftest import` would pick
whichever was imported first.)"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from private_nginx import running_nginx
from pulse_cli.processes import free_port
from pydantic import BaseModel
from servicekit.kafka import encode_event

REPO = Path(__file__).resolve().parents[3]
PORTS = range(61500, 61600)
VIEWER_KEY = "viewer-key-integration-" + uuid.uuid4().hex[:8]
ARTIFACTS = REPO / "tests" / "artifacts" / "dashboard"


def port_in_range() -> int:
    """A free port of the dashboard's range (other helpers' tests use theirs)."""
    return free_port(PORTS)


class DashboardProcess:
    """`python -m dashboard` with its own topics; start/stop/restart from the tests."""

    def __init__(self, stack_env: dict[str, str], topics: dict[str, str], **settings: str) -> None:
        self.port = port_in_range()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            **stack_env,
            "DASHBOARD_HTTP_PORT": str(self.port),
            "DASHBOARD_VIEWER_KEYS": VIEWER_KEY,
            "DASHBOARD_LOG_JSON": "false",
            "DASHBOARD_CANDLES_TOPIC": topics["candles"],
            "DASHBOARD_LIVE_CANDLES_TOPIC": topics["live"],
            "DASHBOARD_ALERTS_TOPIC": topics["alerts"],
            "DASHBOARD_REVIEWS_TOPIC": topics["reviews"],
            **settings,
        }
        self.log_path = Path(tempfile.mkstemp(prefix="pulse-dashboard-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout_s: float = 30.0) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dashboard"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.proc.poll() is None, self.log_path.read_text()
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, self.log_path.read_text()
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: the stream drops without a goodbye."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"X-API-Key": VIEWER_KEY, **kwargs.pop("headers", {})}
        return httpx.get(f"{self.url}{path}", headers=headers, timeout=5, **kwargs)


async def create_topics(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(n, num_partitions=3, replication_factor=1) for n in names]
        )
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(names)
    finally:
        await admin.close()


class Producer:
    """Sends contract events (or raw bytes) to the test's topics, keyed like the contracts."""

    def __init__(self, bootstrap: str, topics: dict[str, str]) -> None:
        self.bootstrap = bootstrap
        self.topics = topics

    async def send_async(
        self,
        items: list[tuple[str, bytes | None, BaseModel | bytes]],
        *,
        timestamp_ms: int | None = None,
    ) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=2)
        await producer.start()
        try:
            for kind, key, value in items:
                data = value if isinstance(value, bytes) else encode_event(value)
                await producer.send(self.topics[kind], data, key=key, timestamp_ms=timestamp_ms)
            await producer.flush()
        finally:
            await producer.stop()

    def send(
        self,
        items: list[tuple[str, bytes | None, BaseModel | bytes]],
        *,
        timestamp_ms: int | None = None,
    ) -> None:
        # In a thread of its own: Playwright's sync API keeps an event loop in the test's.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, self.send_async(items, timestamp_ms=timestamp_ms)).result()


def start_private_nginx(
    stack: ModuleType, *, dashboard_port: int, conf_text: str | None = None
) -> tuple[str, Any]:
    """The project's nginx.conf (or `conf_text`), rendered the way stack.py renders it, on a
    range port. Returns its URL and a stop function (whose `prefix` is nginx's prefix)."""
    running = contextlib.ExitStack()
    nginx = running.enter_context(
        running_nginx(
            stack,
            listen_port=port_in_range(),
            name="dashboard",
            ingest_port=58001,
            query_port=58002,
            dashboard_port=dashboard_port,
            conf_text=conf_text,
        )
    )

    def stop() -> None:
        running.close()

    stop.prefix = nginx.prefix  # type: ignore[attr-defined]
    stop.listen_port = nginx.listen_port  # type: ignore[attr-defined]
    return nginx.url, stop


class CuttableProxy:
    """A TCP proxy on a range port in front of `upstream_port`, in its own thread: `cut()`
    drops every connection and holds new ones unanswered until `resume()`, as a network blip
    does to a browser. Keeps what each connection sent (64 KB) and got (1 MB), in order."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = port_in_range()
        self.requests: list[bytearray] = []  # per connection, what the browser sent
        self.responses: list[bytearray] = []  # per connection, what it got
        self._loop = asyncio.new_event_loop()
        self._open: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        ready = ThreadPoolExecutor(max_workers=1)
        self._thread = ready.submit(self._loop.run_forever)
        self._server = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    async def _start(self) -> asyncio.Server:
        self._open = asyncio.Event()
        self._open.set()
        return await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._open is not None
        self._writers.add(writer)
        try:
            await self._open.wait()
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            self._writers.add(up_writer)
            sent, got = bytearray(), bytearray()
            self.requests.append(sent)
            self.responses.append(got)

            async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
                kept, cap = (sent, 1 << 16) if up else (got, 1 << 20)
                while data := await src.read(65536):
                    kept.extend(data[: max(0, cap - len(kept))])
                    dst.write(data)
                    await dst.drain()
                dst.close()

            await asyncio.gather(
                pipe(reader, up_writer, True), pipe(up_reader, writer, False),
                return_exceptions=True,
            )  # fmt: skip
        except OSError:
            pass
        finally:
            writer.close()

    def cut(self) -> None:
        async def cut() -> None:
            assert self._open is not None
            self._open.clear()
            for writer in list(self._writers):
                writer.transport.abort()
            self._writers.clear()

        asyncio.run_coroutine_threadsafe(cut(), self._loop).result(10)

    def resume(self) -> None:
        assert self._open is not None
        self._loop.call_soon_threadsafe(self._open.set)

    def close(self) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.result(10)


async def read_stream(
    url: str,
    *,
    headers: dict[str, str],
    until: Any,
    timeout_s: float,
    started: asyncio.Event | None = None,
) -> list[tuple[str, Any]]:
    """Server-sent events from `url` as (event, data) until `until(events)` is true or
    `timeout_s` passes; `started` is set once the snapshot has arrived."""
    import orjson

    events: list[tuple[str, Any]] = []

    async def read() -> None:
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=5)) as client,
            client.stream("GET", url, headers=headers) as response,
        ):
            assert response.status_code == 200, await response.aread()
            event = None
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event is not None:
                    events.append((event, orjson.loads(line[6:])))
                    if event == "snapshot" and started is not None:
                        started.set()
                    if until(events):
                        return

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(read(), timeout_s)
    return events


async def started_reader(
    url: str, *, headers: dict[str, str], until: Any, timeout_s: float = 10
) -> asyncio.Task[list[tuple[str, Any]]]:
    """`read_stream` in a task, handed back once the snapshot has arrived (5 s at most)."""
    started = asyncio.Event()
    reader = asyncio.create_task(
        read_stream(url, headers=headers, until=until, timeout_s=timeout_s, started=started)
    )
    await asyncio.wait_for(started.wait(), 5)
    return reader
