"""The services over the broker's TLS + SCRAM listener: the cdc_processor's tick path, and one
review's whole path (API → PostgreSQL → Debezium → cdc_processor → s3_archiver → S3) with
every Pulse Kafka client on that listener."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import TopicPartition
from contracts import datasets, topics
from pulse_cli.processes import wait_healthy
from servicekit.kafka import make_consumer, make_producer
from servicekit.settings import KafkaSettings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

REPO = Path(__file__).resolve().parents[3]
INGEST_PORT = 61620  # this helper's range (61600-61699)


@pytest.fixture
def cdc_worker(
    stack_env: dict[str, str],
    secured_env: dict[str, str],
    cdc_harness: ModuleType,
    tmp_path: Path,
) -> Iterator[Any]:
    """A cdc_processor on the TLS listener, with its own app id, from the stream's end."""
    worker = cdc_harness.Worker(
        stack_env,
        app_id=f"cdc-secured-{uuid.uuid4().hex[:8]}",
        log_dir=tmp_path,
        **secured_env,
        CDC_AUTO_OFFSET_RESET="latest",
        CDC_CANDLE_GRACE_S="2",
        CDC_SMA_PERIOD="2",
    )
    worker.start(ready_timeout_s=150)
    time.sleep(2)  # positions resolve to "latest" on the first fetch after assignment
    yield worker
    worker.stop()


async def test_cdc_processor_turns_quotes_into_candles_over_tls_and_scram(
    cdc_worker: Any, secured_kafka: KafkaSettings, cdc_harness: ModuleType
) -> None:
    symbol = f"TLS{uuid.uuid4().hex[:6].upper()}"
    t0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    ticks = [(t0 + timedelta(minutes=m, seconds=s), 100 + m) for m in range(2) for s in (5, 30)]
    ticks.append((t0 + timedelta(minutes=10), 1))  # closes both windows
    async with cdc_harness.TopicTail(
        "", topics.MARKET_CANDLES.name, kafka=secured_kafka
    ) as candles:
        producer = make_producer(secured_kafka, client_id="it-secured-quotes")
        await producer.start()
        try:
            for at, price in ticks:
                quote = {
                    "symbol": symbol,
                    "asset_class": "equity",
                    "price": str(price),
                    "size": "1",
                    "event_time": at.isoformat(),
                    "source": "it",
                    "polled_at": at.isoformat(),
                }
                await producer.send(
                    topics.MARKET_QUOTES.name, key=symbol.encode(), value=orjson.dumps(quote)
                )
            await producer.flush()
        finally:
            await producer.stop()
        records = await candles.collect(
            lambda rs: len(rs) >= 2, timeout_s=120, keys={symbol.encode()}
        )
    closed = {orjson.loads(r.value)["window_start"]: orjson.loads(r.value) for r in records}
    assert [
        (Decimal(c["open"]), Decimal(c["close"]), c["trade_count"])
        for _, c in sorted(closed.items())
    ][:2] == [(100, 100, 2), (101, 101, 2)]


@pytest.fixture
def ingest_api(stack_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """`python -m ingest` on this helper's port (it writes PostgreSQL only: no Kafka)."""
    env = {**os.environ, **stack_env, "INGEST_HTTP_PORT": str(INGEST_PORT)}
    env["INGEST_LOG_LEVEL"] = "WARNING"
    subprocess.run(
        [sys.executable, "-m", "ingest", "migrate"],
        env=env,
        cwd=REPO,
        check=True,
        timeout=120,
        capture_output=True,
    )
    log = (tmp_path / "ingest.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "ingest"], env=env, cwd=REPO, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{INGEST_PORT}"
    wait_healthy(
        f"{url}/healthz", process, timeout_s=60, interval_s=0.3, log=tmp_path / "ingest.log"
    )
    yield url
    process.terminate()
    process.wait(timeout=20)


async def fast_forward(kafka: KafkaSettings, group: str, topic: topics.TopicSpec) -> None:
    """Commit `group` at the end of `topic`: a new archiver group then reads only new records,
    not the shared stack's history."""
    consumer = make_consumer(kafka, group_id=group, client_id="it-secured-ff")
    await consumer.start()
    try:
        tps = [TopicPartition(topic.name, p) for p in range(topic.partitions)]
        consumer.assign(tps)  # manual assignment: commits go to the group without joining it
        ends = await consumer.end_offsets(tps)
        await consumer.commit({tp: int(ends[tp]) for tp in tps})
    finally:
        await consumer.stop()


async def test_review_posted_to_the_api_is_archived_with_every_kafka_client_on_tls_and_scram(
    stack_env: dict[str, str],
    secured_env: dict[str, str],
    secured_kafka: KafkaSettings,
    archiver_harness: ModuleType,
    ingest_api: str,
    cdc_worker: Any,
    tmp_path: Path,
) -> None:
    class ReviewsScenario(archiver_harness.Scenario):  # type: ignore[name-defined,misc]
        def topic_datasets(self) -> dict[str, str]:
            return {topics.REVIEWS_ENRICHED.name: datasets.REVIEWS_ENRICHED.name}

    scenario = ReviewsScenario({**stack_env, **secured_env}, "secured")
    await fast_forward(secured_kafka, scenario.group, topics.REVIEWS_ENRICHED)
    archiver = archiver_harness.ArchiverProcess(
        scenario, tmp_path, window_s=3, idle_grace_s=1, write_catalog="false"
    ).start()
    try:
        headers = {"X-API-Key": stack_env["PULSE_API_KEY"]}
        sku = f"TLS-{uuid.uuid4().hex[:10]}"
        async with httpx.AsyncClient(base_url=ingest_api, headers=headers, timeout=10) as api:
            product = await api.post(
                "/v1/products",
                json={"sku": sku, "name": "Secured kettle", "brand": "Acme", "category": "home"},
                headers={"Idempotency-Key": uuid.uuid4().hex},
            )
            assert product.status_code == 201, product.text
            review = await api.post(
                "/v1/reviews",
                json={"product_sku": sku, "rating": 5, "body": "Lovely kettle, boils fast."},
                headers={"Idempotency-Key": uuid.uuid4().hex},
            )
            assert review.status_code == 201, review.text
        review_id = review.json()["id"]
        deadline = time.monotonic() + 180
        mine: list[dict[str, Any]] = []
        while not mine:
            assert archiver.proc.poll() is None, archiver.log()[-3000:]
            assert time.monotonic() < deadline, (
                f"review {review_id} not archived; archiver log:\n{archiver.log()[-3000:]}"
            )
            await asyncio.sleep(1)
            mine = [r for r in await scenario.rows() if r["review_id"] == review_id]
    finally:
        archiver.terminate()
    assert mine[0]["product_sku"] == sku and mine[0]["rating"] == 5
    assert mine[0]["_topic"] == topics.REVIEWS_ENRICHED.name
    # The processor that enriched it is the one on the TLS listener (the shared stack's own
    # processor, if running, writes the same review; this worker's metric shows it sent too).
    assert 'topic="reviews.enriched.v1"' in cdc_worker.get("/metrics").text
