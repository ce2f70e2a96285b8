"""`python -m crawler` against the fixture site and the real Kafka: what lands on the topics."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from contracts.events import QuotePolled, ReviewCrawled
from crawler_fixture_site import FixtureSite, feed_config, site_config
from hostile_site import free_port_in_range

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


def crawler_env(
    stack_env: dict[str, str],
    site: FixtureSite,
    topics: dict[str, str],
    state_dir: Path,
    **extra: str,
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRAWLER_")}
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": stack_env["KAFKA_BOOTSTRAP_SERVERS"],
            "CRAWLER_SITES": json.dumps([site_config(site.origin)]),
            "CRAWLER_QUOTE_FEEDS": json.dumps([feed_config(site.origin)]),
            "CRAWLER_REVIEWS_TOPIC": topics["reviews"],
            "CRAWLER_QUOTES_TOPIC": topics["quotes"],
            "CRAWLER_STATE_DIR": str(state_dir),
            "CRAWLER_ALLOW_PRIVATE_NETWORKS": "127.0.0.1/32",
            "CRAWLER_MIN_DELAY_S": "0",
            "CRAWLER_LOG_JSON": "false",
        }
    )
    env.update(extra)
    return env


async def run_once(env: dict[str, str]) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "crawler",
        "--once",
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, output.decode()


async def read_all(bootstrap: str, topic: str) -> list[tuple[str, dict[str, Any]]]:
    """Every record on the topic (from the beginning to the current end offsets)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(3)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        records: list[tuple[str, dict[str, Any]]] = []
        async with asyncio.timeout(20):
            while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
                batch = await consumer.getmany(timeout_ms=500)
                for messages in batch.values():
                    records.extend((m.key.decode(), json.loads(m.value)) for m in messages)
        return records
    finally:
        await consumer.stop()


async def test_once_publishes_reviews_and_quotes_and_a_second_run_nothing_new(
    stack_env: dict[str, str], site: FixtureSite, crawl_topics: dict[str, str], tmp_path: Path
) -> None:
    bootstrap = stack_env["KAFKA_BOOTSTRAP_SERVERS"]
    env = crawler_env(stack_env, site, crawl_topics, tmp_path / "state")
    await run_once(env)

    reviews = await read_all(bootstrap, crawl_topics["reviews"])
    assert len(reviews) == 13
    events = [ReviewCrawled.model_validate(value) for _, value in reviews]
    assert [key for key, _ in reviews] == [e.key for e in events]
    assert {e.source for e in events} == {"homegear"}
    assert {e.product_sku for e in events} == {
        "KTL-100",
        "TST-200",
        "BLN-300",
        "GRL-400",
        "MXR-500",
        "CFM-600",
    }
    leak = next(v for k, v in reviews if k == "homegear:https://homegear.example/reviews/r-1002")
    assert leak["rating"] == 1.0 and leak["published_at"] == "2026-10-12T00:00:00Z"
    assert leak["product_ref"] == "gtin13:4006381333931"
    # The grill page states 7 on 0–10: carried exactly (decimal strings) with its scale.
    grill = next(v for _, v in reviews if v.get("rating_source_value") == "7")
    assert grill["rating_exact"] == "3.8"
    assert (grill["rating_source_worst"], grill["rating_source_best"]) == ("0", "10")

    quotes = await read_all(bootstrap, crawl_topics["quotes"])
    assert sorted(k for k, _ in quotes) == ["ACME", "BTC-USD", "ETH-USD"]
    btc = next(v for k, v in quotes if k == "BTC-USD")
    assert btc["price"] == "67012.123456789012345678"  # a string: no float on the way
    assert QuotePolled.model_validate(btc).price == Decimal("67012.123456789012345678")

    # A second run (a new process, state from the file) publishes no review; a new one only it.
    await run_once(env)
    assert len(await read_all(bootstrap, crawl_topics["reviews"])) == 13
    site.state.with_new_review = True
    await run_once(env)
    after = await read_all(bootstrap, crawl_topics["reviews"])
    assert len(after) == 14
    assert "homegear:https://homegear.example/reviews/r-1006" in {k for k, _ in after}


async def test_continuous_mode_serves_health_and_crawler_metrics(
    stack_env: dict[str, str], site: FixtureSite, crawl_topics: dict[str, str], tmp_path: Path
) -> None:
    port = free_port_in_range()
    env = crawler_env(
        stack_env,
        site,
        crawl_topics,
        tmp_path / "state",
        CRAWLER_HTTP_HOST="127.0.0.1",
        CRAWLER_HTTP_PORT=str(port),
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "crawler",
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    published = 'pulse_crawler_reviews_total{site="homegear",stage="published"} 13.0'
    try:
        metrics_text = ""
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=2) as client:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and published not in metrics_text:
                await asyncio.sleep(0.5)
                try:
                    metrics_text = (await client.get("/metrics")).text
                except httpx.TransportError:
                    continue
            health = await client.get("/healthz")
        assert published in metrics_text
        assert 'pulse_crawler_pages_fetched_total{site="homegear",status="200"}' in metrics_text
        assert 'pulse_crawler_robots_denials_total{site="homegear"} 1.0' in metrics_text
        assert 'pulse_crawler_quotes_total{feed="homegear-markets"} 3.0' in metrics_text
        assert "pulse_crawler_site_lag_seconds" in metrics_text
        assert health.status_code == 200 and health.json()["status"] == "ok"
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), timeout=15)
