"""`python -m quality report` on the real stack: both digests archived under the test's
reports prefix, a `report` alert per team on the test's alerts topic, and the digest's
figures equal to the same figures computed here with independent SQL over the objects."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import archive_data
import duckdb
import pyarrow.dataset as ds
import pytest
from query.archive import PARTITIONING, ArchiveLocation
from test_quality_checks import consume_all

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def read(location: ArchiveLocation, dataset: str) -> ds.Dataset:
    return ds.dataset(
        f"{location.root}/{dataset}",
        filesystem=location.filesystem,
        format="parquet",
        partitioning=PARTITIONING,
    )


async def test_digests_are_archived_published_and_match_independent_sql(
    stack_env: dict[str, str],
    new_topic: Any,
    location: ArchiveLocation,
    archive_prefix: str,
    run_id: str,
) -> None:
    alerts_topic = await new_topic(f"quality-test-{run_id}.report-alerts", 3)
    now = datetime.now(UTC)
    archive_data.good_archive(location, now, hours=48)
    reports_prefix = archive_prefix.replace("/archive", "/reports")
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUALITY_")}
    env.update(stack_env)
    env.update(
        {
            "QUALITY_ARCHIVE_PREFIX": archive_prefix,
            "QUALITY_REPORTS_PREFIX": reports_prefix,
            "QUALITY_ALERTS_TOPIC": alerts_topic,
            "QUALITY_LOG_JSON": "false",
        }
    )
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "quality", "report"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "*Market desk digest" in proc.stdout and "*Customer digest" in proc.stdout

    bucket_root = location.root.rsplit("/", 1)[0]
    figures = {}
    for team in ("customer", "market"):
        folder = f"{bucket_root}/reports/{team}/dt={now:%Y-%m-%d}"
        for kind in ("html", "txt", "json"):
            with location.filesystem.open_input_stream(f"{folder}/{team}.{kind}") as f:
                body = f.read().decode()
            if kind == "json":
                figures[team] = json.loads(body)
            if kind == "html":
                assert body.startswith("<!doctype html>") and "<table" in body

    # independent SQL: DuckDB straight over the Parquet objects, same 24-hour window
    end = datetime.fromisoformat(figures["market"]["window_end"])
    start = end - timedelta(hours=24)
    con = duckdb.connect()
    con.register("candles", read(location, "market_candles"))
    con.register("reviews", read(location, "reviews_enriched"))
    expected_market = con.execute(
        """SELECT symbol, MIN(low)::DOUBLE, MAX(high)::DOUBLE, SUM(volume)::DOUBLE, COUNT(*)
        FROM candles WHERE event_time >= ? AND event_time < ? GROUP BY symbol ORDER BY symbol""",
        [start, end],
    ).fetchall()
    market = figures["market"]["sections"]["Range and volume per symbol (24 h)"]
    assert [
        (r["symbol"], r["low"], r["high"], r["volume"], r["candles"]) for r in market
    ] == expected_market
    assert len(expected_market) == len(archive_data.SYMBOLS)

    end = datetime.fromisoformat(figures["customer"]["window_end"])
    expected_negative = con.execute(
        """SELECT product_sku, COUNT(*) FROM reviews
        WHERE sentiment_label = 'negative' AND event_time >= ? AND event_time < ?
        GROUP BY product_sku ORDER BY COUNT(*) DESC, product_sku LIMIT 5""",
        [end - timedelta(hours=24), end],
    ).fetchall()
    negative = figures["customer"]["sections"]["Products with the most negative reviews (24 h)"]
    assert [(r["product_sku"], r["negative_reviews"]) for r in negative] == expected_negative
    assert expected_negative and all(n > 0 for _, n in expected_negative)

    alerts = await consume_all(
        stack_env["KAFKA_BOOTSTRAP_SERVERS"], alerts_topic, expect=2, timeout_s=20
    )
    assert sorted((a["kind"], a["subject"]) for a in alerts) == [
        ("report", "customer"),
        ("report", "market"),
    ]
    market_alert = next(a for a in alerts if a["subject"] == "market")
    assert market_alert["message"].startswith("*Market desk digest")
    assert market_alert["details"]["html_path"].endswith("/market.html")
