"""market_feeds on the real stack: simulated exchange trades → `python -m market_feeds` →
market.trades.v1 (real Kafka) → a cdc_processor worker → market.candles.v1, and the archiver →
market_trades Parquet rows in S3Proxy, with exact values and no duplicates.

The trades topic is the contract's (cdc_processor reads only it); this run's symbols are
unique. Gaps and DLQ records go to topics of this run. Ports come from feeds' range.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from contracts import topics
from market_feeds.simulator import ExchangeSimulator
from market_feeds.simulator.session import SimTrade
from pulse_cli.processes import stop_process
from pulse_cli.scripts import load_script

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
cdc = sys.modules["feeds_it_cdc_fixtures"]  # loaded by conftest.py
harness = load_script(
    REPO / "tests/integration/s3_archiver/archiver_harness.py", "feeds_it_archiver_harness"
)

SIM_PORT, FEEDS_PORT, CDC_PORT, ARCHIVER_PORT = 61430, 61431, 61432, 61433  # feeds: 61400-61499


class Clock:
    """The simulator's clock: trades carry the times the test sets."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
async def sim() -> AsyncIterator[tuple[ExchangeSimulator, Clock]]:
    # A whole minute, ten minutes ago: the candle windows are known in advance.
    clock = Clock(datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10))
    simulator = ExchangeSimulator(port=SIM_PORT, heartbeat_interval_s=0.5, clock=clock)
    await simulator.start()
    yield simulator, clock
    await simulator.stop()


@pytest.fixture
def feeds_process(stack_env: dict[str, str], tmp_path: Path) -> Iterator[Any]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (tmp_path / "market_feeds.log").open("wb")
        full = {k: v for k, v in os.environ.items() if not k.startswith("MARKET_FEEDS_")}
        full.update(stack_env)
        full.update(env)
        proc = subprocess.Popen(
            [sys.executable, "-m", "market_feeds"],
            cwd=REPO,
            env=full,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        stop_process(proc)


async def wait_until(condition: Any, *, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        partitions = await producer.partitions_for(topic)  # waits for the topic's metadata
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
    finally:
        await consumer.stop()
    assert ends, f"no partitions of {topic}"
    return {tp.partition: offset for tp, offset in ends.items()}


async def commit_offsets(bootstrap: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        tps = {TopicPartition(topic, p): offset for p, offset in offsets.items()}
        consumer.assign(list(tps))
        await consumer.commit(tps)
    finally:
        await consumer.stop()


async def test_simulated_trades_reach_kafka_candles_and_the_archive_exactly(
    stack_env: dict[str, str],
    sim: tuple[ExchangeSimulator, Clock],
    feeds_process: Any,
    make_worker: Any,
    new_topic: Any,
    tmp_path: Path,
) -> None:
    simulator, clock = sim
    tag = uuid.uuid4().hex[:8].upper()
    venue_symbols = {"coinbase": f"T{tag}-USD", "kraken": f"T{tag}/USD"}
    pulse = {"coinbase": f"IT{tag}-CB", "kraken": f"IT{tag}-KR"}
    gaps_topic = await new_topic(f"it.feeds.{tag}.gaps", 3)
    dlq_topic = await new_topic(f"it.feeds.{tag}.dlq", 3)
    bootstrap = stack_env["KAFKA_BOOTSTRAP_SERVERS"]

    # 1. the stream processor (it also makes sure market.trades.v1 exists)
    worker = make_worker(CDC_CANDLE_GRACE_S="1", CDC_AUTO_OFFSET_RESET="latest")
    worker.port = CDC_PORT
    worker.env["CDC_HTTP_PORT"] = str(CDC_PORT)
    await asyncio.to_thread(worker.start)
    trades_start = await end_offsets(bootstrap, topics.MARKET_TRADES.name)

    # 2. market_feeds, pointed at the simulator by the one URL setting per exchange
    proc = feeds_process(
        {
            "MARKET_FEEDS_ENABLED": "coinbase,kraken",
            "MARKET_FEEDS_COINBASE_URL": simulator.url("coinbase"),
            "MARKET_FEEDS_KRAKEN_URL": simulator.url("kraken"),
            "MARKET_FEEDS_COINBASE_SYMBOLS": orjson.dumps(
                {venue_symbols["coinbase"]: pulse["coinbase"]}
            ).decode(),
            "MARKET_FEEDS_KRAKEN_SYMBOLS": orjson.dumps(
                {venue_symbols["kraken"]: pulse["kraken"]}
            ).decode(),
            "MARKET_FEEDS_GAPS_TOPIC": gaps_topic,
            "MARKET_FEEDS_DLQ_TOPIC": dlq_topic,
            "MARKET_FEEDS_HTTP_PORT": str(FEEDS_PORT),
            "MARKET_FEEDS_LOG_JSON": "false",
            "MARKET_FEEDS_BACKOFF_BASE_S": "0.05",
            "MARKET_FEEDS_BACKOFF_MAX_S": "0.2",
        }
    )
    await wait_until(
        lambda: all(simulator.subscribers(v) == 1 for v in venue_symbols),
        timeout_s=30,
        what=f"both feeds to subscribe (exit code {proc.poll()})",
    )

    async with (
        cdc.TopicTail(bootstrap, topics.MARKET_TRADES.name) as trades_tail,
        cdc.TopicTail(bootstrap, topics.MARKET_CANDLES.name) as candles_tail,
        cdc.TopicTail(bootstrap, gaps_topic) as gaps_tail,
    ):
        window = clock.at
        sent: list[SimTrade] = []

        async def emit(second: float, venue: str) -> None:
            clock.at = window + timedelta(seconds=second)
            sent.extend(await simulator.emit(venue, 1, symbols=[venue_symbols[venue]]))

        for venue in venue_symbols:
            for n in range(20):
                await emit(1 + n * 2, venue)
        # faults mid-minute: skipped numbers, then a dropped connection that replays 5 trades
        for venue in venue_symbols:
            simulator.skip(venue, 2)
            await emit(45, venue)
            simulator.replay(venue, 5)
            await simulator.drop(venue)
        await wait_until(
            lambda: (
                all(simulator.venues[v].connections == 2 for v in venue_symbols)
                and all(simulator.subscribers(v) == 1 for v in venue_symbols)
            ),
            timeout_s=30,
            what="both feeds to reconnect",
        )
        for venue in venue_symbols:
            await emit(50, venue)
            await emit(63, venue)  # next minute, past the 1 s grace: the first candle closes

        ours = {s.encode() for s in pulse.values()}
        trade_records = await trades_tail.collect(
            lambda rs: len(rs) >= len(sent), timeout_s=60, keys=ours
        )
        await asyncio.sleep(1.0)  # anything extra (a duplicate) would arrive by now
        trade_records += [
            m
            for batch in (await trades_tail.consumer.getmany(timeout_ms=500)).values()
            for m in batch
            if m.key in ours
        ]
        published = [orjson.loads(r.value) for r in trade_records]
        assert len(published) == len(sent), "a trade was lost or published twice"
        by_id = {(p["venue_symbol"], p["trade_id"]): p for p in published}
        for trade in sent:
            got = by_id[(trade.symbol, str(trade.trade_id))]
            assert got["price"] == format(trade.price, "f") and got["size"] == format(
                trade.size, "f"
            )
            assert datetime.fromisoformat(got["event_time"]) == trade.time

        candle_records = await candles_tail.collect(
            lambda rs: len(rs) >= 2, timeout_s=60, keys=ours
        )
        candles = {r.key.decode(): orjson.loads(r.value) for r in candle_records}
        for venue, symbol in pulse.items():
            minute = [
                t
                for t in sent
                if t.symbol == venue_symbols[venue] and t.time < window + timedelta(minutes=1)
            ]
            candle = candles[symbol]
            assert datetime.fromisoformat(candle["window_start"]) == window
            assert Decimal(candle["open"]) == minute[0].price
            assert Decimal(candle["close"]) == minute[-1].price
            assert Decimal(candle["high"]) == max(t.price for t in minute)
            assert Decimal(candle["low"]) == min(t.price for t in minute)
            assert Decimal(candle["volume"]) == sum(t.size for t in minute)
            assert candle["trade_count"] == len(minute) == 22

        gap_records = await gaps_tail.collect(lambda rs: len(rs) >= 2, timeout_s=30)
        gaps = sorted(orjson.loads(r.value)["symbol"] for r in gap_records)
        assert gaps == sorted(pulse.values())
        assert {orjson.loads(r.value)["missing_count"] for r in gap_records} == {2}

    # 3. the archiver: market.trades.v1 → market_trades Parquet, exact decimals
    sc = harness.Scenario(stack_env, "feeds")
    sc.topic_datasets = lambda: {topics.MARKET_TRADES.name: "market_trades"}  # type: ignore[method-assign]
    sc.topic = dlq_topic  # the archiver's own DLQ goes to a topic of this run
    sc.dlq = dlq_topic
    # The shared topic holds every earlier run's trades (a benchmark's latency phase alone
    # publishes ~125,000): the archiver's group starts where this test began, not at the
    # topic's beginning, or it is still archiving old hours when the deadline below passes.
    await commit_offsets(bootstrap, sc.group, topics.MARKET_TRADES.name, trades_start)
    archiver = harness.ArchiverProcess(sc, tmp_path, window_s=3, idle_grace_s=1)
    archiver.port = ARCHIVER_PORT
    archiver.env["ARCHIVER_HTTP_PORT"] = str(ARCHIVER_PORT)
    archiver.start()
    try:
        rows: list[dict[str, Any]] = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            rows = [r for r in await sc.rows() if r["symbol"] in pulse.values()]
            if len(harness.dedup(rows)) >= len(sent):
                break
            await asyncio.sleep(1.0)
        archived = {(r["venue_symbol"], r["trade_id"]): r for r in harness.dedup(rows).values()}
        assert len(archived) == len(sent)
        for trade in sent:
            row = archived[(trade.symbol, str(trade.trade_id))]
            assert row["price"] == trade.price and row["size"] == trade.size
            assert isinstance(row["price"], Decimal) and row["event_time"] == trade.time
    finally:
        archiver.stop_quietly()
    # the service stayed healthy throughout (both feeds connected, frames flowing)
    async with httpx.AsyncClient(timeout=3) as client:
        health = (await client.get(f"http://127.0.0.1:{FEEDS_PORT}/healthz")).json()
    assert health["status"] == "ok", health
    assert "coinbase: connected" in health["checks"]["feeds"]["detail"]
