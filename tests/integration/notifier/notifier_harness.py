"""Run `python -m notifier` as a subprocess against the real stack, with local receivers."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pulse_cli import processes

PORTS = range(61300, 61400)  # this helper's range (the brief's port plan)
SECRET = "whsec_" + base64.b64encode(b"pulse-notifier-integration-32byt").decode()


def free_port() -> int:
    """A free port of this suite's range, in random order so parallel runs rarely collide."""
    return processes.free_port(PORTS, shuffle=True)


def review_alert(n: int, *, subject: str = "product:1", run: str = "") -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return {
        "alert_id": f"{run}review-{subject}-{n}",
        "kind": "negative_review",
        "subject": subject,
        "severity": "critical",
        "message": f"negative review r{n} on {subject}",
        "event_time": now,
        "raised_at": now,
        "details": {
            "review_id": f"r{n}",
            "rating": "1",
            "sentiment_score": "-0.81",
            "sentiment_label": "negative",
            "excerpt": "The lid broke on day two and [EMAIL] never answered",
            "product_sku": "KTL-100",
            "product_name": "Kettle",
            "product_brand": "Acme",
            "product_category": "kitchen",
        },
    }


class NotifierProcess:
    def __init__(self, env: dict[str, str], *, port: int, state_dir: Path) -> None:
        self.env = env
        self.port = port
        self.state_dir = state_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = state_dir / "notifier.log"

    def start(self, *, wait_s: float = 30.0) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "notifier"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + wait_s
        while True:
            assert self.proc.poll() is None, self.log()
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"notifier not healthy:\n{self.log()}"
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill9(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def notifier_env(
    stack_env: dict[str, str],
    *,
    topic: str,
    dlq_topic: str,
    port: int,
    state_dir: Path,
    **settings: str,
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env.update(stack_env)
    env.update(
        {
            "NOTIFIER_ALERTS_TOPIC": topic,
            "NOTIFIER_DLQ_TOPIC": dlq_topic,
            "NOTIFIER_GROUP_ID": f"{topic}-notifier",
            "NOTIFIER_AUTO_OFFSET_RESET": "earliest",
            "NOTIFIER_HTTP_PORT": str(port),
            "NOTIFIER_STATE_DIR": str(state_dir),
            "NOTIFIER_WEBHOOK_SECRET": SECRET,
            "NOTIFIER_SESSION_TIMEOUT_MS": "6000",
            "NOTIFIER_LOG_JSON": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update({f"NOTIFIER_{k.upper()}": v for k, v in settings.items()})
    return env


async def produce(
    bootstrap: str, topic: str, values: Iterable[dict[str, Any] | bytes], *, key: bytes = b"k"
) -> list[float]:
    """Send each value (keyed by its subject); returns the send times (time.time())."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    sent = []
    try:
        for value in values:
            raw = value if isinstance(value, bytes) else orjson.dumps(value)
            k = key if isinstance(value, bytes) else str(value["subject"]).encode()
            sent.append(time.time())
            await producer.send_and_wait(topic, raw, key=k)
    finally:
        await producer.stop()
    return sent


async def read_topic(bootstrap: str, topic: str, *, count: int, timeout_s: float) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(records) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for rs in batch.values():
                records.extend(rs)
    finally:
        await consumer.stop()
    return records


async def wait_until(predicate: Any, *, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def unique(prefix: str) -> str:
    return f"{prefix}.{uuid.uuid4().hex[:10]}"
