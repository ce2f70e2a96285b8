"""`python -m quality check` on the real stack's S3 and Kafka: a good archive passes every
check, and still does with identical re-emitted copies archived again (delivery duplicates,
which only the delivery-duplicate shares see); deliberately bad objects (among them a
conflicting review version and check result) fail exactly their checks with the observed
values, the
results land in dq_results (archived by the real archiver, read by the query engine) and the
alerts on an alerts topic unique to the test."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import archive_data
import orjson
import pyarrow as pa
import pytest
from aiokafka import AIOKafkaConsumer
from contracts import datasets
from contracts.identity import review_event_id
from query.archive import ArchiveCatalog, ArchiveLocation
from query.engine import QueryEngine

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

HOURS = 72


def quality_env(
    stack_env: dict[str, str], prefix: str, results: str, alerts: str
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUALITY_")}
    env.update(stack_env)
    env.update(
        {
            "QUALITY_ARCHIVE_PREFIX": prefix,
            "QUALITY_RESULTS_TOPIC": results,
            "QUALITY_ALERTS_TOPIC": alerts,
            "QUALITY_LOG_JSON": "false",
        }
    )
    return env


def run_check(env: dict[str, str]) -> tuple[int, dict[str, str]]:
    """Exit code and {"dataset.check": line}."""
    proc = subprocess.run(
        [sys.executable, "-m", "quality", "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    lines = {}
    for line in proc.stdout.splitlines():
        if line.startswith(("PASS ", "FAIL ")):
            key = line.split()[1].split("[")[0]
            lines[key] = line
    assert lines, proc.stdout + proc.stderr
    return proc.returncode, lines


def observed(line: str) -> float:
    return float(line.split("observed=")[1].split()[0])


async def consume_all(bootstrap: str, topic: str, *, expect: int, timeout_s: float) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    out: list[Any] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(out) < expect and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                out += [orjson.loads(r.value) for r in records]
        await asyncio.sleep(0.5)  # anything beyond `expect` would show up here
        batch = await consumer.getmany(timeout_ms=500)
        for records in batch.values():
            out += [orjson.loads(r.value) for r in records]
    finally:
        await consumer.stop()
    return out


def write_bad_objects(location: ArchiveLocation, now: datetime) -> None:
    # 1. a candle with a zero price (its low), on a symbol of its own at the latest minute
    minute = now.replace(second=0, microsecond=0) - timedelta(minutes=1)
    zero = archive_data.candle(
        "ZERO-USD", "crypto", minute, base=archive_data.Decimal(10), emitted=now
    )
    zero = zero.model_copy(update={"low": archive_data.Decimal(0)})
    archive_data.write(location, datasets.MARKET_CANDLES, [zero], start_offset=10_000_000)
    # 2. a stale dataset: the alerts are replaced by ones ten days old
    alerts_dir = f"{location.root}/alerts"
    archive_data.delete_tree(location, alerts_dir)
    archive_data.write(
        location, datasets.ALERTS, archive_data.alerts(now - timedelta(days=10), hours=6)
    )
    # 3. a conflicting review version: the newest review's id, time and op again, with
    # another rating and text, so another event_id (its content digest)
    original = archive_data.reviews(now, hours=HOURS)[-1]
    conflict = original.model_copy(
        update={
            "rating": 1 + original.rating % 5,
            "body": "edited",
            "event_id": review_event_id(
                original.review_id, op="upsert", source_lsn=None, content=("edited",)
            ),
        }
    )
    assert conflict.event_id != original.event_id
    archive_data.write(location, datasets.REVIEWS_ENRICHED, [conflict], start_offset=20_000_000)
    # 4. a column with nulls: three new reviews whose dedup_key is null
    fresh = [
        archive_data.review(900_000 + k, now - timedelta(minutes=5 + k), rating=4, product_id=1)
        for k in range(3)
    ]

    def null_dedup_key(table: pa.Table) -> pa.Table:
        i = table.schema.get_field_index("dedup_key")
        return table.set_column(
            i,
            pa.field("dedup_key", pa.string(), nullable=True),
            pa.nulls(table.num_rows, pa.string()),
        )

    archive_data.write(
        location,
        datasets.REVIEWS_ENRICHED,
        fresh,
        start_offset=30_000_000,
        table_hook=null_dedup_key,
    )
    # 5. a drifted schema: one new review with a column the contract does not have
    drifted = [archive_data.review(950_000, now - timedelta(minutes=3), rating=5, product_id=2)]
    archive_data.write(
        location,
        datasets.REVIEWS_ENRICHED,
        drifted,
        start_offset=40_000_000,
        table_hook=archive_data.with_extra_column,
    )
    # 6. a quote with a zero price, from the test's feed at the latest minute
    zero_quote = archive_data.quote("BTC-USD", "crypto", minute, price=archive_data.Decimal(0))
    archive_data.write(location, datasets.MARKET_QUOTES, [zero_quote], start_offset=50_000_000)
    # 7. a feed gap whose count disagrees with its range (3 numbers missing, 5 counted)
    gap = archive_data.feed_gap(999, now - timedelta(minutes=4), missing_count=5)
    archive_data.write(location, datasets.MARKET_FEED_GAPS, [gap], start_offset=60_000_000)
    # 8. a conflicting check result: the newest seeded result's run and check (so its
    # event_id) again, with another observed value and outcome
    result = archive_data.dq_results(now, hours=HOURS)[-1]
    other = result.model_copy(update={"observed_value": 5.0, "passed": False, "outcome": "failed"})
    archive_data.write(location, datasets.DQ_RESULTS, [other], start_offset=70_000_000)


def write_delivery_copies(location: ArchiveLocation, now: datetime) -> None:
    """Identical re-emitted records (same event_id, same content) at new offsets, as a crash
    re-emits them or a feed reconnect replays them: delivery duplicates readers drop, which
    fail no uniqueness check."""
    copies = {
        datasets.MARKET_CANDLES: archive_data.candles(now, hours=1)[-4:],
        datasets.REVIEWS_ENRICHED: archive_data.reviews(now, hours=HOURS)[-2:-1],
        datasets.MARKET_TRADES: archive_data.trades(now, hours=1)[-4:],
        datasets.MARKET_FEED_GAPS: archive_data.feed_gaps(now, hours=HOURS)[-1:],
        datasets.DQ_RESULTS: archive_data.dq_results(now, hours=HOURS)[-2:-1],
    }
    for n, (dataset, events) in enumerate(copies.items()):
        archive_data.write(location, dataset, events, start_offset=80_000_000 + n * 1000)


EXPECTED_FAILURES = {
    "market_candles.low_positive": 1.0,
    "alerts.freshness": None,  # ~10 days, checked below
    "reviews_enriched.one_row_per_review_version": 1.0,
    "reviews_enriched.dedup_key_not_null": 3.0,
    "reviews_enriched.schema_matches_contract": 1.0,
    "market_quotes.price_positive": 1.0,
    "market_feed_gaps.missing_range_consistent": 1.0,
    "dq_results.one_result_per_check_and_run": 1.0,
}


def start_archiver(
    env: dict[str, str], results_topic: str, prefix: str, log: Path
) -> subprocess.Popen[bytes]:
    archiver_env = {k: v for k, v in env.items() if not k.startswith("ARCHIVER_")}
    archiver_env.update(
        {
            "ARCHIVER_TOPIC_DATASETS": orjson.dumps({results_topic: "dq_results"}).decode(),
            "ARCHIVER_ROOT_PREFIX": prefix,
            "ARCHIVER_GROUP_ID": f"quality-test-{results_topic}",
            "ARCHIVER_DLQ_TOPIC": f"{results_topic}.dlq",
            "ARCHIVER_HTTP_PORT": "61601",  # the quality tests' port range
            "ARCHIVER_LOG_JSON": "false",
            "ARCHIVER_POLL_TIMEOUT_MS": "200",
            "ARCHIVER_WINDOW_S": "2",
            "ARCHIVER_IDLE_GRACE_S": "1",
        }
    )
    handle = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "s3_archiver"], env=archiver_env, stdout=handle, stderr=handle
    )


async def test_good_archive_passes_and_bad_objects_fail_exactly_their_checks(
    stack_env: dict[str, str],
    new_topic: Any,
    location: ArchiveLocation,
    archive_prefix: str,
    run_id: str,
    tmp_path: Path,
) -> None:
    results_topic = await new_topic(f"quality-test-{run_id}.results", 3)
    alerts_topic = await new_topic(f"quality-test-{run_id}.alerts", 3)
    await new_topic(f"{results_topic}.dlq", 1)
    env = quality_env(stack_env, archive_prefix, results_topic, alerts_topic)
    now = datetime.now(UTC)
    archive_data.good_archive(location, now, hours=HOURS)

    code, good = await asyncio.to_thread(run_check, env)
    failing = [line for line in good.values() if line.startswith("FAIL")]
    assert code == 0 and not failing, "\n".join(failing)
    assert len(good) >= 35

    # delivery copies alone fail nothing, and the shares see them
    write_delivery_copies(location, now)
    code, copied = await asyncio.to_thread(run_check, env)
    failing = [line for line in copied.values() if line.startswith("FAIL")]
    assert code == 0 and not failing, "\n".join(failing)
    for dataset in (
        "market_candles",
        "reviews_enriched",
        "market_trades",
        "market_feed_gaps",
        "dq_results",
    ):
        assert observed(copied[f"{dataset}.delivery_duplicate_share"]) > 0, dataset
    assert observed(good["market_candles.delivery_duplicate_share"]) == 0

    write_bad_objects(location, now)
    code, bad = await asyncio.to_thread(run_check, env)
    failed = {key: line for key, line in bad.items() if line.startswith("FAIL")}
    assert code == 1
    assert set(failed) == set(EXPECTED_FAILURES), "\n".join(failed.values())
    for key, value in EXPECTED_FAILURES.items():
        if value is not None:
            assert observed(failed[key]) == value, failed[key]
    # the newest stale alert is 10 days and 3 hours old
    assert observed(failed["alerts.freshness"]) == pytest.approx(10 + 3 / 24, abs=0.01)
    assert "extra=['review_score_v2']" in failed["reviews_enriched.schema_matches_contract"]

    # alerts: one data_quality alert per failed check, on the test's alerts topic
    alerts = await consume_all(
        stack_env["KAFKA_BOOTSTRAP_SERVERS"], alerts_topic, expect=len(failed), timeout_s=20
    )
    assert {a["kind"] for a in alerts} == {"data_quality"}
    assert {f"{a['subject']}.{a['details']['check']}" for a in alerts} == set(failed)

    # dq_results: the archiver writes the results topic under the test's prefix; the query
    # engine reads it like every dataset
    total = len(good) + len(copied) + len(bad)
    archiver = start_archiver(env, results_topic, archive_prefix, tmp_path / "archiver.log")
    try:
        engine = QueryEngine(ArchiveCatalog(location, ttl_s=0))
        # the results the test seeded (archive_data.dq_results) are not this test's runs
        not_seeded = f"run_id NOT LIKE '{archive_data.SEED_RUN_ID}%'"
        deadline = time.monotonic() + 60
        rows: list[tuple[Any, ...]] = []
        while time.monotonic() < deadline:
            rows = engine.run(f"SELECT count(*) FROM dq_results WHERE {not_seeded}").rows
            if rows[0][0] >= total:
                break
            await asyncio.sleep(1)
        assert rows[0][0] == total, (tmp_path / "archiver.log").read_text()[-3000:]
        recorded = engine.run(
            "SELECT dataset || '.' || \"check\", observed_value, threshold FROM dq_results "
            f"WHERE NOT passed AND {not_seeded} ORDER BY 1"
        ).rows
    finally:
        archiver.terminate()
        archiver.wait(30)
    assert {r[0] for r in recorded} == set(failed)
    by_check = {r[0]: r for r in recorded}
    assert by_check["reviews_enriched.dedup_key_not_null"][1] == 3.0
    assert by_check["market_candles.low_positive"][1] == 1.0
    assert by_check["market_candles.low_positive"][2].startswith("must_be=0")
