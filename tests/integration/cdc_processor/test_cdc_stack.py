"""The cdc_processor on the real stack: PostgreSQL → Debezium → Kafka → worker → Kafka."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from conftest import TopicTail
from contracts import topics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture
def worker(make_worker: Any) -> Any:
    # "latest": a fresh group skips the shared stack's history (tens of thousands of other
    # tests' ticks), so this test's records are processed as they arrive.
    w = make_worker(
        CDC_CANDLE_GRACE_S="2",
        CDC_SMA_PERIOD="2",
        CDC_EMA_PERIOD="3",
        CDC_AUTO_OFFSET_RESET="latest",
    )
    w.start()
    time.sleep(2)  # positions resolve to "latest" on the first fetch after assignment
    return w


async def test_review_inserted_in_postgres_is_scrubbed_scored_joined_and_alerted(
    worker: Any, migrated: dict[str, str]
) -> None:
    bootstrap = migrated["KAFKA_BOOTSTRAP_SERVERS"]
    sku = f"IT-{uuid.uuid4().hex[:8]}"
    review_id = uuid.uuid4()
    async with (
        TopicTail(bootstrap, topics.REVIEWS_ENRICHED.name) as enriched,
        TopicTail(bootstrap, topics.ALERTS.name) as alerts,
    ):
        conn = await asyncpg.connect(migrated["DATABASE_URL"])
        try:
            product_id = await conn.fetchval(
                "INSERT INTO products (sku, name, brand, category)"
                " VALUES ($1, $2, $3, $4) RETURNING id",
                sku,
                "Integration Kettle",
                "Acme",
                "kitchen",
            )
            await conn.execute(
                "INSERT INTO reviews (id, product_id, rating, title, body, author_name,"
                " author_email, locale)"
                " VALUES ($1, $2, 1, $3, $4, $5, $6, 'en')",
                review_id,
                product_id,
                "Awful",
                "Terrible kettle, it leaks and burned me. "
                "Call me on +44 20 7946 0958 or mail jane.doe@example.com",
                "Jane Doe",
                "jane.doe@example.com",
            )
        finally:
            await conn.close()
        key = str(review_id).encode()
        # The review may be processed before its product (two topics): then it is emitted
        # with product_known=False and re-emitted joined. Wait for this worker's joined record:
        # other processors on the shared stack (the e2e tier's, with the stack's pseudonym key)
        # may enrich the same row, and their pseudonyms differ by design.
        key_bytes = worker.env["CDC_PSEUDONYM_KEY"].encode()
        mine = hmac.new(key_bytes, b"email:jane.doe@example.com", hashlib.sha256).hexdigest()[:32]

        def joined(rs: list[Any]) -> list[Any]:
            return [
                r
                for r in rs
                if (v := orjson.loads(r.value))["product_known"] and v["author_pseudonym"] == mine
            ]

        records = joined(await enriched.collect(joined, timeout_s=90, keys={key}))
        record = records[0]
        alert_records = await alerts.collect(
            lambda rs: len(rs) >= 1, timeout_s=30, keys={f"product:{product_id}".encode()}
        )
    value = orjson.loads(record.value)
    # This worker's duplicates (a redelivery) are identical but for enriched_at.
    for other in records[1:]:
        assert {**orjson.loads(other.value), "enriched_at": None} == {**value, "enriched_at": None}
    assert value["op"] == "upsert" and value["product_known"] is True
    assert value["product_sku"] == sku and value["product_name"] == "Integration Kettle"
    assert "[PHONE]" in value["body"] and "[EMAIL]" in value["body"]
    assert value["pii_counts"] == {"phone": 1, "email": 1}
    raw = record.value.decode()
    assert "jane" not in raw.lower() and "7946" not in raw
    assert value["sentiment_label"] == "negative" and value["sentiment_score"] < -0.5
    assert value["language"] == "en" and value["rating"] == 1
    assert isinstance(value["source_lsn"], int)
    kinds = {orjson.loads(a.value)["kind"] for a in alert_records}
    assert "negative_review" in kinds
    # Another worker on the shared stack may have written the record first: wait (bounded)
    # until this one has sent it too.
    wanted = 'pulse_events_out_total{service="cdc_processor",topic="reviews.enriched.v1"}'
    deadline = time.monotonic() + 15
    while wanted not in (metrics := worker.get("/metrics").text):
        assert time.monotonic() < deadline, metrics[-3000:]
        await asyncio.sleep(0.2)
    assert worker.get("/healthz").status_code == 200


async def test_ticks_inserted_in_postgres_produce_candles(
    worker: Any, migrated: dict[str, str]
) -> None:
    bootstrap = migrated["KAFKA_BOOTSTRAP_SERVERS"]
    symbol = f"IT{uuid.uuid4().hex[:6].upper()}"
    t0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
    rows = [
        (symbol, "equity", Decimal(p), Decimal("2"), t0 + timedelta(seconds=s), "it")
        for s, p in [(1, "10.5"), (30, "11.25"), (59, "10.75"), (65, "12"), (125, "13")]
    ]
    async with TopicTail(bootstrap, topics.MARKET_CANDLES.name) as candles:
        conn = await asyncpg.connect(migrated["DATABASE_URL"])
        try:
            # One commit at a time: Debezium keys ticks by row id, so ticks of one symbol
            # spread over partitions and only arrival spacing (or grace) keeps them in order.
            for row in rows:
                await conn.execute(
                    "INSERT INTO market_ticks (symbol, asset_class, price, size, event_time, venue)"
                    " VALUES ($1, $2, $3, $4, $5, $6)",
                    *row,
                )
                await asyncio.sleep(0.7)
        finally:
            await conn.close()
        records = await candles.collect(
            lambda rs: len(_by_window(rs, sma_period=2)) >= 2, timeout_s=90, keys={symbol.encode()}
        )
    first, second = (c for _k, c in sorted(_by_window(records, sma_period=2).items()))
    assert first["window_start"].startswith("2026-01-05T10:00:00")
    assert Decimal(first["open"]) == Decimal("10.5") and Decimal(first["close"]) == Decimal("10.75")
    assert Decimal(first["high"]) == Decimal("11.25") and first["trade_count"] == 3
    assert first["vwap"] == "10.833333333333333333"  # quantized to DECIMAL(38,18)
    assert Decimal(first["volume"]) == 6
    assert second["trade_count"] == 1 and Decimal(second["sma"]) == (Decimal("10.75") + 12) / 2


async def _wait_committed(
    bootstrap: str, group: str, partitions: set[tuple[str, int]], timeout_s: float = 30.0
) -> None:
    """Until `group` has a committed offset on every one of `partitions` (admin API: no join)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            offsets = await admin.list_consumer_group_offsets(group)
            committed = {
                (tp.topic, tp.partition) for tp, meta in offsets.items() if meta.offset >= 0
            }
            if partitions <= committed:
                return
            assert time.monotonic() < deadline, f"{group} never committed {partitions}"
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


def _quotes(symbols: list[str], minutes: int, per_minute: int) -> list[tuple[bytes, bytes]]:
    t0 = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)
    out = []
    for minute in range(minutes):
        for i in range(per_minute):
            for n, symbol in enumerate(symbols):
                at = t0 + timedelta(minutes=minute, seconds=i * 59 / per_minute)
                price = Decimal(100 + n) + Decimal((minute * 7 + i * 3) % 23) / 10
                out.append(
                    (
                        symbol.encode(),
                        orjson.dumps(
                            {
                                "symbol": symbol,
                                "asset_class": "equity",
                                "price": str(price),
                                "size": str(1 + i % 4),
                                "event_time": at.isoformat(),
                                "source": "it",
                                "polled_at": at.isoformat(),
                            }
                        ),
                    )
                )
    closing = t0 + timedelta(minutes=minutes + 5)
    for symbol in symbols:  # closes every window
        out.append(
            (
                symbol.encode(),
                orjson.dumps(
                    {
                        "symbol": symbol,
                        "asset_class": "equity",
                        "price": "1",
                        "size": "1",
                        "event_time": closing.isoformat(),
                        "source": "it",
                        "polled_at": closing.isoformat(),
                    }
                ),
            )
        )
    return out


def _by_window(records: list[Any], *, sma_period: int) -> dict[tuple[str, str], dict[str, Any]]:
    """Candles by (symbol, window). Only this test's workers use `sma_period`: records from
    other workers on the shared stack (default settings) are left out."""
    candles: dict[tuple[str, str], dict[str, Any]] = {}
    for record in records:
        value = orjson.loads(record.value)
        if value["sma_period"] != sma_period:
            continue
        value.pop("emitted_at")
        key = (value["symbol"], value["window_start"])
        # at-least-once: a replayed candle must be identical to the first copy
        assert candles.setdefault(key, value) == value, f"candle {key} differs on replay"
    return candles


async def test_kill_9_mid_stream_then_restart_equals_uninterrupted_run(
    make_worker: Any, migrated: dict[str, str]
) -> None:
    bootstrap = migrated["KAFKA_BOOTSTRAP_SERVERS"]
    symbols = [f"K9{uuid.uuid4().hex[:6].upper()}", f"K9{uuid.uuid4().hex[:6].upper()}"]
    minutes = 30
    quotes = _quotes(symbols, minutes=minutes, per_minute=100)
    keys = {s.encode() for s in symbols}
    expected_windows = minutes * len(symbols)
    settings = {"CDC_AUTO_OFFSET_RESET": "latest", "CDC_SMA_PERIOD": "4"}
    by_window = lambda rs: _by_window(rs, sma_period=4)  # noqa: E731
    done = lambda rs: len(by_window(rs)) >= expected_windows  # noqa: E731

    async def produce(part: list[tuple[bytes, bytes]], *, group: str | None = None) -> None:
        # With `group`: the first tick of each symbol, then wait until the worker has committed
        # it (a fresh group starts at "latest", so a kill before its first commit would restart
        # past the stream: a test artefact, workers start at "earliest" by default). Then the
        # rest of `part`.
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks="all")
        await producer.start()
        try:
            if group is not None:
                first, part = part[: len(symbols)], part[len(symbols) :]
                sent = [
                    await (await producer.send(topics.MARKET_QUOTES.name, key=key, value=value))
                    for key, value in first
                ]
                await _wait_committed(bootstrap, group, {(m.topic, m.partition) for m in sent})
            for key, value in part:
                await producer.send(topics.MARKET_QUOTES.name, key=key, value=value)
            await producer.flush()
        finally:
            await producer.stop()

    async def start(worker: Any) -> None:
        # The readiness wait polls synchronously (up to a session timeout after a kill -9):
        # off the event loop, so the tail's fetches are answered meanwhile.
        await asyncio.to_thread(worker.start)
        await asyncio.sleep(2)

    # Each run is a fresh app id starting at "latest" (no shared-stack history), fed the same
    # quotes once it is assigned; the two runs' outputs are told apart by TopicTail offsets.
    async with TopicTail(bootstrap, topics.MARKET_CANDLES.name) as tail:
        baseline = make_worker(**settings)
        await start(baseline)
        await produce(quotes, group=baseline.app_id)
        uninterrupted = by_window(await tail.collect(done, timeout_s=150, keys=keys))
        baseline.stop()

    # The victim gets the first half, is killed as soon as some of its candles are out (its
    # last second of work uncommitted: commits run every second), and the second half arrives
    # while it is down; the restarted worker replays from its last commit on restored state.
    half = len(quotes) // 2
    async with TopicTail(bootstrap, topics.MARKET_CANDLES.name) as tail:
        victim = make_worker(**settings)
        await start(victim)
        await produce(quotes[:half], group=victim.app_id)
        partial = await tail.collect(lambda rs: len(rs) >= 10, timeout_s=120, keys=keys)
        victim.kill9()
        await produce(quotes[half:])
        await start(victim)
        restarted = by_window(
            partial + await tail.collect(lambda rs: done(partial + rs), timeout_s=150, keys=keys)
        )
        victim.stop()

    assert len(uninterrupted) == expected_windows
    assert restarted == uninterrupted
    total = sum(c["trade_count"] for c in restarted.values())
    assert total == minutes * 100 * len(symbols)
