"""Harness for the archiver's integration tests: unique topics and prefixes, the archiver as a
real subprocess (so it can be killed with SIGKILL), and readers for Kafka commits and S3."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from contracts.events import CandleClosed
from s3_archiver import encoding
from s3_archiver.object_store import list_etags, s3_client
from s3_archiver.settings import S3Settings

HERE = Path(__file__).resolve().parent
BASE_TIME = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def candle(i: int, *, hours: int = 3) -> CandleClosed:
    """Event number i: every value derives from i so the archive can be checked exactly."""
    when = BASE_TIME + timedelta(hours=(i // 3) % hours, seconds=i)
    return CandleClosed.model_validate(
        {
            "symbol": f"SYM{i % 7}",
            "asset_class": "crypto",
            "window_start": when,
            "window_end": when + timedelta(minutes=1),
            "open": f"{i}.123456789012345678",
            "high": f"{i * 3}.5",
            "low": "0.000000000000000001",
            "close": f"-{i}.25",
            "volume": "99999999999999999999.999999999999999999",
            "vwap": f"{i}",
            "trade_count": i,
            "sma": None if i % 2 else f"{i}.1",
            "sma_period": 20,
            "ema": "1",
            "ema_period": 12,
            "event_time": when,
            "emitted_at": when,
        }
    )


def expected_values(i: int) -> dict[str, Any]:
    c = candle(i)
    return {
        "trade_count": i,
        "open": c.open,
        "close": c.close,
        "volume": c.volume,
        "sma": c.sma,
        "event_time": c.event_time,
    }


class Scenario:
    """A unique topic set, S3 prefix and consumer group for one test."""

    def __init__(self, stack_env: dict[str, str], name: str, *, partitions: int = 3) -> None:
        tag = f"{name}-{uuid.uuid4().hex[:8]}"
        self.env = stack_env
        self.topic = f"it.s3arch.{tag}.candles"
        self.dlq = f"it.s3arch.{tag}.dlq"
        self.extra_topics: dict[str, str] = {}
        self.partitions = partitions
        self.root = f"it-s3arch/{tag}/archive"
        self.group = f"it-s3arch-{tag}"
        self.bootstrap = stack_env["KAFKA_BOOTSTRAP_SERVERS"]
        self.s3 = S3Settings(
            s3_endpoint_url=stack_env["S3_ENDPOINT_URL"],
            s3_bucket=stack_env["S3_BUCKET"],
            aws_access_key_id=stack_env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=stack_env["AWS_SECRET_ACCESS_KEY"],
            aws_region=stack_env.get("AWS_REGION", "us-east-1"),
        )

    def topic_datasets(self) -> dict[str, str]:
        return {self.topic: "market_candles", **self.extra_topics}

    async def create_topics(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            names = [self.topic, self.dlq, *self.extra_topics]
            await admin.create_topics(
                [NewTopic(n, num_partitions=self.partitions, replication_factor=1) for n in names]
            )
        finally:
            await admin.close()

    async def produce(
        self,
        values: list[tuple[bytes | None, bytes]],
        *,
        topic: str | None = None,
        partition_of: Any = None,
    ) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5, acks="all")
        await producer.start()
        try:
            futures = []
            for n, (key, value) in enumerate(values):
                partition = None if partition_of is None else partition_of(n)
                futures.append(
                    await producer.send(
                        topic or self.topic, value=value, key=key, partition=partition
                    )
                )
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    async def produce_candles(self, numbers: range) -> None:
        await self.produce(
            [(None, orjson.dumps(candle(i).model_dump(mode="json"))) for i in numbers],
            partition_of=lambda n: numbers[n] % self.partitions,
        )

    async def committed(self) -> dict[int, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(self.group)
        finally:
            await admin.close()
        return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == self.topic}

    async def end_offsets(self) -> dict[int, int]:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap)
        await consumer.start()
        try:
            tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
            ends = await consumer.end_offsets(tps)
        finally:
            await consumer.stop()
        return {tp.partition: off for tp, off in ends.items()}

    @contextlib.asynccontextmanager
    async def s3_client(self) -> AsyncIterator[Any]:
        async with s3_client(self.s3, timeout_s=10) as client:
            yield client

    async def listing(self) -> dict[str, str]:
        """key → ETag of every data object under this scenario's root."""
        async with self.s3_client() as client:
            every = await list_etags(client, bucket=self.s3.s3_bucket, prefix=self.root + "/")
        return {key: etag for key, etag in every.items() if key.endswith(".parquet")}

    async def listing_all(self) -> set[str]:
        async with self.s3_client() as client:
            response = await client.list_objects_v2(
                Bucket=self.s3.s3_bucket, Prefix=self.root + "/_catalog/"
            )
        return {item["Key"] for item in response.get("Contents", [])}

    async def rows(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        async with self.s3_client() as client:
            for key in sorted(await self.listing()):
                response = await client.get_object(Bucket=self.s3.s3_bucket, Key=key)
                async with response["Body"] as body:
                    table: pa.Table = encoding.read_parquet(await body.read())
                for row in table.to_pylist():
                    row["_key"] = key
                    rows.append(row)
        return rows

    async def wait_for_rows(self, count: int, *, timeout_s: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            rows = await self.rows()
            if len(dedup(rows)) >= count:
                return rows
            await asyncio.sleep(0.5)
        raise AssertionError(f"only {len(dedup(rows))}/{count} rows archived in {timeout_s}s")


def dedup(rows: list[dict[str, Any]]) -> dict[tuple[str, int, int], dict[str, Any]]:
    return {(r["_topic"], r["_partition"], r["_offset"]): r for r in rows}


class ArchiverProcess:
    """`python -m s3_archiver` as a subprocess with its own health port and log file."""

    def __init__(self, scenario: Scenario, log_dir: Path, **settings: Any) -> None:
        self.scenario = scenario
        self.port = free_port()
        self.log_path = log_dir / f"archiver-{uuid.uuid4().hex[:6]}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVER_")}
        env.update(scenario.env)
        env.update(
            {
                "ARCHIVER_TOPIC_DATASETS": orjson.dumps(scenario.topic_datasets()).decode(),
                "ARCHIVER_ROOT_PREFIX": scenario.root,
                "ARCHIVER_GROUP_ID": scenario.group,
                "ARCHIVER_DLQ_TOPIC": scenario.dlq,
                "ARCHIVER_HTTP_PORT": str(self.port),
                "ARCHIVER_LOG_JSON": "false",
                "ARCHIVER_POLL_TIMEOUT_MS": "200",
                "ARCHIVER_SESSION_TIMEOUT_MS": "6000",
            }
        )
        env.update({f"ARCHIVER_{k.upper()}": str(v) for k, v in settings.items()})
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ArchiverProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "s3_archiver"], env=self.env, stdout=log, stderr=log
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def terminate(self, timeout_s: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout_s)

    def wait(self, timeout_s: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"archiver still running after {timeout_s}s:\n{self.log()[-4000:]}"
            ) from None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def peak_rss_mb(self) -> float:
        status = Path(f"/proc/{self.pid}/status").read_text()
        match = re.search(r"VmHWM:\s+(\d+) kB", status)
        assert match
        return int(match.group(1)) / 1024

    def metrics(self) -> dict[str, float]:
        """`/metrics` as {sample name with labels: value}; {} while not up."""
        import http.client

        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            conn.request("GET", "/metrics")
            body = conn.getresponse().read().decode()
        except OSError:
            return {}
        out: dict[str, float] = {}
        for line in body.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def metric(self, prefix: str) -> float:
        return sum(v for k, v in self.metrics().items() if k.startswith(prefix))

    def stop_quietly(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def values_equal(row: dict[str, Any], i: int) -> bool:
    expected = expected_values(i)
    return all(row[k] == v for k, v in expected.items())
