"""A small archive on local disk, laid out like the S3 one, with known contents (data only;
the fixtures are in conftest.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

DAY1 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
DAY2 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
T0 = datetime(2026, 11, 22, 17, 0, tzinfo=UTC)
DEC = pa.decimal128(38, 18)
TS = pa.timestamp("us", tz="UTC")

CLOSES = {
    "BTC-USD": ["67000", "67100", "66900", "67300", "67250"],
    "ETH-USD": ["3500", "3510", "3490", "3525", "3520"],
    "ACME": ["100", "101", "99.5", "102", "101.5"],
}


def review(
    rid: str,
    op: str,
    sku: str | None,
    rating: int | None,
    score: float | None,
    at: datetime,
    partition: int,
    offset: int,
    body: str = "fine",
) -> dict[str, Any]:
    label = None if score is None else ("negative" if score < -0.05 else "positive")
    return {
        "review_id": rid,
        "op": op,
        "source": "app",
        "dedup_key": rid,
        "product_sku": sku,
        "rating": rating,
        "title": "t",
        "body": body,
        "sentiment_score": score,
        "sentiment_label": label,
        "event_time": at,
        "_topic": "reviews.enriched.v1",
        "_partition": partition,
        "_offset": offset,
        "_archived_at": at + timedelta(seconds=5),
    }


def write(
    root: Path, dataset: str, at: datetime, name: str, rows: list[dict[str, Any]], schema: pa.Schema
) -> None:
    folder = root / dataset / f"dt={at:%Y-%m-%d}" / f"hour={at:%H}"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), folder / name)


# The columns the archiver adds to every row (contracts.datasets.ARCHIVE_COLUMNS).
ARCHIVE_FIELDS = [
    ("_topic", pa.string()),
    ("_partition", pa.int32()),
    ("_offset", pa.int64()),
    ("_archived_at", TS),
]
REVIEW_SCHEMA = pa.schema(
    [
        ("review_id", pa.string()),
        ("op", pa.string()),
        ("source", pa.string()),
        ("dedup_key", pa.string()),
        ("product_sku", pa.string()),
        ("rating", pa.int64()),
        ("title", pa.string()),
        ("body", pa.string()),
        ("sentiment_score", pa.float64()),
        ("sentiment_label", pa.string()),
        ("event_time", TS),
        *ARCHIVE_FIELDS,
    ]
)
CANDLE_SCHEMA = pa.schema(
    [
        ("symbol", pa.string()),
        ("asset_class", pa.string()),
        ("window_start", TS),
        ("open", DEC),
        ("high", DEC),
        ("low", DEC),
        ("close", DEC),
        ("volume", DEC),
        ("vwap", DEC),
        ("trade_count", pa.int64()),
        ("sma", DEC),
        ("sma_period", pa.int64()),
        ("event_time", TS),
        *ARCHIVE_FIELDS,
    ]
)
ALERT_SCHEMA = pa.schema(
    [
        ("alert_id", pa.string()),
        ("kind", pa.string()),
        ("subject", pa.string()),
        ("severity", pa.string()),
        ("message", pa.string()),
        ("event_time", TS),
        *ARCHIVE_FIELDS,
    ]
)


def build_archive(root: Path) -> None:
    p0 = [
        review("r1", "upsert", "KTL-1", 5, 0.8, DAY1, 0, 0),
        review("r2", "upsert", "KTL-1", 1, -0.6, DAY1, 0, 1),
        review("r2", "upsert", "KTL-1", 3, 0.2, DAY1 + timedelta(minutes=5), 0, 2),
        review("r3", "upsert", "MUG-2", 2, -0.7, DAY1, 0, 3, body="broke [email]"),
        review("r3", "delete", None, None, None, DAY1 + timedelta(minutes=9), 0, 4),
    ]
    write(
        root,
        "reviews_enriched",
        DAY1,
        "reviews.enriched.v1+0+0000000000000000000.parquet",
        p0,
        REVIEW_SCHEMA,
    )
    # The archive is at-least-once: offset 0 was written twice (a replayed object).
    write(
        root,
        "reviews_enriched",
        DAY1,
        "reviews.enriched.v1+0+0000000000000000000.dup.parquet",
        p0[:1],
        REVIEW_SCHEMA,
    )
    write(
        root,
        "reviews_enriched",
        DAY2,
        "reviews.enriched.v1+1+0000000000000000000.parquet",
        [review("r4", "upsert", "MUG-2", 1, -0.9, DAY2, 1, 0, body="awful")],
        REVIEW_SCHEMA,
    )

    candles = []
    offset = 0
    for symbol, closes in CLOSES.items():
        for minute, close in enumerate(closes):
            start = T0 + timedelta(minutes=minute)
            price = Decimal(close)
            candles.append(
                {
                    "symbol": symbol,
                    "asset_class": "equity" if symbol == "ACME" else "crypto",
                    "window_start": start,
                    "open": price,
                    "high": price,
                    "low": price,
                    "close": price,
                    "volume": Decimal("2"),
                    "vwap": price,
                    "trade_count": 2,
                    "sma": price,
                    "sma_period": 5,
                    "event_time": start,
                    "_topic": "market.candles.v1",
                    "_partition": 0,
                    "_offset": offset,
                    "_archived_at": start,
                }
            )
            offset += 1
    write(
        root,
        "market_candles",
        T0,
        "market.candles.v1+0+0000000000000000000.parquet",
        candles,
        CANDLE_SCHEMA,
    )

    alerts = [
        {
            "alert_id": "a1",
            "kind": "negative_review",
            "subject": "MUG-2",
            "severity": "warning",
            "message": "m",
            "event_time": DAY2,
            "_topic": "alerts.v1",
            "_partition": 0,
            "_offset": 0,
            "_archived_at": DAY2,
        },
        {
            "alert_id": "a1",
            "kind": "negative_review",
            "subject": "MUG-2",
            "severity": "warning",
            "message": "m",
            "event_time": DAY2,
            "_topic": "alerts.v1",
            "_partition": 0,
            "_offset": 1,
            "_archived_at": DAY2,
        },
        {
            "alert_id": "a2",
            "kind": "price_move",
            "subject": "ACME",
            "severity": "critical",
            "message": "m",
            "event_time": DAY2,
            "_topic": "alerts.v1",
            "_partition": 1,
            "_offset": 0,
            "_archived_at": DAY2,
        },
    ]
    write(root, "alerts", DAY2, "alerts.v1+0+0000000000000000000.parquet", alerts, ALERT_SCHEMA)
