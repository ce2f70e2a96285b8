"""One archiver on a fresh topic set: a lone event on a quiet partition lands within window +
grace; bad records go to the DLQ with a reason; DuckDB reads the archive through the
catalog's views with exact values."""

from __future__ import annotations

import asyncio
import base64
import time
from decimal import Decimal
from pathlib import Path

import duckdb
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from archiver_harness import BASE_TIME, ArchiverProcess, Scenario, candle, dedup, expected_values
from contracts import datasets
from contracts.events import ReviewEnriched
from s3_archiver.duckdb_views import attach

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

WINDOW_S, GRACE_S = 3.0, 1.0


# Even reviews: a crawled 1.8 on 0–10, exact. Odd ones: written before the exact fields.
EXACT = {
    "rating_exact": "1.72",
    "rating_source_value": "1.8",
    "rating_source_worst": "0",
    "rating_source_best": "10",
}


def review(i: int) -> ReviewEnriched:
    exact = EXACT if i % 2 == 0 else {}
    return ReviewEnriched.model_validate(
        {
            "review_id": f"r-{i}",
            "op": "upsert",
            "source": "app",
            "dedup_key": f"d-{i}",
            "rating": 1 + i % 5,
            "body": f"body {i} <EMAIL>",
            "pii_counts": {"email": i},
            "sentiment_score": -0.5,
            "sentiment_label": "negative",
            "event_time": BASE_TIME,
            "enriched_at": BASE_TIME,
            **exact,
        }
    )


def review_bytes(i: int) -> bytes:
    """The record as its producer wrote it: old producers sent no rating_* keys at all."""
    document = review(i).model_dump(mode="json")
    if i % 2:
        document = {k: v for k, v in document.items() if k not in EXACT}
    return orjson.dumps(document)


async def read_dlq(sc: Scenario, count: int, timeout_s: float) -> list[dict[str, object]]:
    consumer = AIOKafkaConsumer(
        sc.dlq,
        bootstrap_servers=sc.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    out: list[dict[str, object]] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(out) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            out += [orjson.loads(r.value) for rs in batch.values() for r in rs if r.value]
    finally:
        await consumer.stop()
    return out


async def test_idle_flush_dead_letters_and_duckdb_views(
    stack_env: dict[str, str], archivers: list[ArchiverProcess], log_dir: Path
) -> None:
    sc = Scenario(stack_env, "views", partitions=2)
    reviews_topic = sc.topic.replace(".candles", ".reviews")
    sc.extra_topics = {reviews_topic: "reviews_enriched"}
    await sc.create_topics()
    proc = ArchiverProcess(sc, log_dir, window_s=WINDOW_S, idle_grace_s=GRACE_S).start()
    archivers.append(proc)
    deadline = time.monotonic() + 60
    while "assigned [" not in proc.log() and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.2)  # polling a subprocess's log: no event to wait on
    assert "assigned [" in proc.log(), proc.log()

    # Idle flush: one event, then nothing on that partition.
    sent = time.monotonic()
    await sc.produce_candles(range(1))
    await sc.wait_for_rows(1, timeout_s=WINDOW_S + GRACE_S + 10)
    landed = time.monotonic() - sent
    # window + grace, plus one poll and the listing interval of this test
    assert landed <= WINDOW_S + GRACE_S + 1.5, f"lone event took {landed:.1f}s to land"

    # The rest, with two records the archive cannot hold.
    await sc.produce_candles(range(1, 40))
    await sc.produce(
        [(f"r-{i}".encode(), review_bytes(i)) for i in range(10)],
        topic=reviews_topic,
    )
    bad_price = candle(999).model_dump(mode="json") | {"open": 1.5}  # a float: not exact
    await sc.produce(
        [(b"bad-1", orjson.dumps(bad_price)), (b"bad-2", b"{not json")], partition_of=lambda n: 0
    )
    rows = await sc.wait_for_rows(50, timeout_s=WINDOW_S + GRACE_S + 20)
    assert len(dedup(rows)) == 50

    dead = await read_dlq(sc, 2, timeout_s=20)
    assert sorted(d["reason"] for d in dead) == ["schema_invalid", "undecodable"]
    assert {base64.b64decode(str(d["original_value_b64"])) for d in dead} >= {b"{not json"}
    assert all(d["source_topic"] == sc.topic and d["service"] == "s3_archiver" for d in dead)
    assert proc.metric('pulse_dlq_records_total{reason="schema_invalid"') == 1

    # DuckDB through the catalog's views, offline (pyarrow S3 via fsspec, no httpfs download).
    con = duckdb.connect()
    views = attach(con, sc.s3, datasets.ALL, root=sc.root)
    assert sorted(views) == ["market_candles", "reviews_enriched"]
    got = con.sql(
        "SELECT trade_count, open, close, volume, sma, event_time, dt, hour "
        "FROM market_candles ORDER BY trade_count"
    ).fetchall()
    assert [g[0] for g in got] == list(range(40))
    for trade_count, open_, close, volume, sma, event_time, dt, hour in got:
        want = expected_values(trade_count)
        assert (open_, close, volume, sma) == (
            want["open"],
            want["close"],
            want["volume"],
            want["sma"],
        )
        assert isinstance(open_, Decimal) and event_time == want["event_time"]
        assert (str(dt), hour) == (want["event_time"].strftime("%Y-%m-%d"), want["event_time"].hour)
    pii = con.sql(
        "SELECT review_id, pii_counts['email'], rating FROM reviews_enriched ORDER BY _offset"
    ).fetchall()
    assert sorted(pii) == sorted((f"r-{i}", i, 1 + i % 5) for i in range(10))
    # The exact rating lands as DECIMAL; rows from old producers have NULL there.
    ratings = con.sql(
        "SELECT review_id, rating_exact, rating_source_value, rating_source_worst, "
        "rating_source_best, typeof(rating_exact) FROM reviews_enriched"
    ).fetchall()
    want_exact = (Decimal("1.72"), Decimal("1.8"), Decimal("0"), Decimal("10"))
    assert sorted(ratings) == sorted(
        (f"r-{i}", *(want_exact if i % 2 == 0 else (None,) * 4), "DECIMAL(38,18)")
        for i in range(10)
    )
    catalog_keys = await sc.listing_all()
    assert f"{sc.root}/_catalog/market_candles.json" in catalog_keys
    assert proc.terminate(30) == 0


async def test_sigterm_writes_open_buffers_and_commits_within_grace(
    stack_env: dict[str, str], archivers: list[ArchiverProcess], log_dir: Path
) -> None:
    sc = Scenario(stack_env, "sigterm")
    await sc.create_topics()
    await sc.produce_candles(range(120))
    proc = ArchiverProcess(sc, log_dir, window_s=300, idle_grace_s=300, shutdown_grace_s=10)
    archivers.append(proc.start())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (  # noqa: ASYNC110
        proc.metric("pulse_events_in_total") >= 120
        and proc.metric("pulse_archive_open_buffers") >= 1
    ):
        await asyncio.sleep(0.2)  # polling a subprocess's /metrics: no event to wait on
    assert proc.metric("pulse_archive_objects_total") == 0  # all still buffered
    assert await sc.listing() == {}
    started = time.monotonic()
    assert proc.terminate(30) == 0, proc.log()
    assert time.monotonic() - started < 10 + 5
    rows = await sc.rows()
    assert len(dedup(rows)) == 120
    assert await sc.committed() == await sc.end_offsets()
