"""Fixtures for the cdc_processor on the real stack: tables migrated, a worker subprocess
with its own app id (consumer group, tables, internal topics) and a free health port."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pulse_cli.processes import stop_process

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def migrated(stack_env: dict[str, str]) -> dict[str, str]:
    """The ingest service's tables exist (its idempotent migration)."""
    env = {**os.environ, **stack_env}
    result = subprocess.run(
        ["uv", "run", "python", "-m", "ingest", "migrate"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return stack_env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Worker:
    """`python -m cdc_processor` as a subprocess; `kill9()` and `start()` again to restart."""

    def __init__(
        self, stack_env: dict[str, str], *, app_id: str, log_dir: Path, **settings: str
    ) -> None:
        self.app_id = app_id
        self.port = free_port()
        self.log_dir = log_dir
        self.env = {
            **os.environ,
            **stack_env,
            "CDC_APP_ID": app_id,
            "CDC_HTTP_PORT": str(self.port),
            "CDC_LOG_JSON": "false",
            "CDC_PSEUDONYM_KEY": "integration-test-key",
            "CDC_DATA_DIR": str(log_dir / "data"),
            **settings,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, *, ready_timeout_s: float = 90.0) -> None:
        self.starts += 1
        log = (self.log_dir / f"{self.app_id}-{self.starts}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cdc_processor"],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"worker exited early; see {log.name}"
            try:
                response = httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1.0)
                body = response.json()
                detail = body["checks"]["assigned"]["detail"]
                if response.status_code == 200 and not detail.startswith("0 "):
                    return
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            time.sleep(0.3)
        raise AssertionError(
            f"worker {self.app_id} not ready in {ready_timeout_s}s; see {log.name}"
        )

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=3.0)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


@pytest.fixture
def make_worker(migrated: dict[str, str]) -> Iterator[Any]:
    workers: list[Worker] = []
    log_dir = Path(tempfile.mkdtemp(prefix="cdc-it-logs-"))

    def make(**settings: str) -> Worker:
        worker = Worker(
            migrated, app_id=f"cdc-it-{uuid.uuid4().hex[:10]}", log_dir=log_dir, **settings
        )
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        worker.stop()


class TopicTail:
    """Reads a topic from the end offsets it had when created (other runs' records excluded)."""

    def __init__(self, bootstrap: str, topic: str, *, kafka: Any = None) -> None:
        """`kafka`: servicekit KafkaSettings to connect with (e.g. over TLS + SCRAM); default
        plaintext to `bootstrap`."""
        self.bootstrap = bootstrap
        self.topic = topic
        self.kafka = kafka
        self.start: dict[Any, int] = {}

    async def __aenter__(self) -> TopicTail:
        from aiokafka import AIOKafkaConsumer, TopicPartition
        from servicekit.kafka import make_consumer

        if self.kafka is None:
            self.consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, enable_auto_commit=False
            )
        else:
            self.consumer = make_consumer(self.kafka, group_id=None, client_id="it-tail")
        await self.consumer.start()
        partitions = self.consumer.partitions_for_topic(self.topic)
        for _ in range(50):
            if partitions:
                break
            await asyncio.sleep(0.2)
            await self.consumer._client.force_metadata_update()  # topic just created
            partitions = self.consumer.partitions_for_topic(self.topic)
        assert partitions, f"topic {self.topic} has no partitions"
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self.consumer.assign(tps)
        self.start = await self.consumer.end_offsets(tps)
        for tp, offset in self.start.items():
            self.consumer.seek(tp, offset)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def collect(
        self, done: Any, *, timeout_s: float, keys: set[bytes] | None = None
    ) -> list[Any]:
        """Records (key filter applied) until `done(records)` is true; fails on timeout."""
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batch = await self.consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                records.extend(m for m in messages if keys is None or m.key in keys)
            if done(records):
                return records
        raise AssertionError(f"timed out on {self.topic}: {len(records)} records so far")
