"""Archive objects for the quality tests, written through the archiver's own writer code
(`s3_archiver.encoding`, `object_keys`): good data over the last days, and the bad objects."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

import pyarrow as pa
import pyarrow.fs as pafs
from contracts import datasets
from contracts.datasets import Dataset
from contracts.events import (
    AlertRaised,
    CandleClosed,
    DataQualityResult,
    Event,
    FeedGap,
    QuotePolled,
    ReviewEnriched,
    TradeExecuted,
)
from contracts.identity import (
    alert_event_id,
    candle_event_id,
    quality_result_event_id,
    review_event_id,
)
from query.archive import ArchiveLocation
from s3_archiver import encoding
from s3_archiver.object_keys import partition_path
from s3_archiver.parquet_schema import schema_for

SYMBOLS = {"BTC-USD": "crypto", "ETH-USD": "crypto", "AAPL": "equity", "MSFT": "equity"}
PRODUCTS = {1: ("SKU-1", "Kettle"), 2: ("SKU-2", "Toaster"), 3: ("SKU-3", "Blender")}


def candles(now: datetime, *, hours: int) -> list[CandleClosed]:
    """One candle per symbol and minute over the `hours` before `now` (minute-aligned)."""
    out = []
    end = now.replace(second=0, microsecond=0)
    for minute in range(hours * 60, 0, -1):
        start = end - timedelta(minutes=minute)
        for n, (symbol, asset_class) in enumerate(SYMBOLS.items()):
            base = Decimal(100 * (n + 1)) + Decimal(minute % 17) / 4
            out.append(candle(symbol, asset_class, start, base=base, emitted=end))
    return out


def candle(
    symbol: str, asset_class: str, start: datetime, *, base: Decimal, emitted: datetime
) -> CandleClosed:
    values = (base, base + 2, base - 2, base + 1, Decimal(3) + Decimal(start.minute) / 10)
    return CandleClosed.model_validate(
        {
            "event_id": candle_event_id(symbol, start, values=values),
            "symbol": symbol,
            "asset_class": asset_class,
            "window_start": start,
            "window_end": start + timedelta(minutes=1),
            "open": base,
            "high": base + 2,
            "low": base - 2,
            "close": base + 1,
            "volume": Decimal(3) + Decimal(start.minute) / 10,
            "vwap": base,
            "trade_count": 5,
            "sma": base,
            "sma_period": 20,
            "ema": base,
            "ema_period": 12,
            "event_time": start,
            "emitted_at": emitted,
        }
    )


def reviews(now: datetime, *, hours: int) -> list[ReviewEnriched]:
    """Six reviews an hour: three products, app and crawled, ratings 1–5, scores in -1…1."""
    out = []
    for h in range(hours, 0, -1):
        for k in range(6):
            when = now - timedelta(hours=h, minutes=-k * 7)
            i = h * 6 + k
            out.append(review(i, when, rating=1 + i % 5, product_id=1 + i % 3))
    return out


def review(
    i: int, when: datetime, *, rating: int, product_id: int, review_id: str | None = None
) -> ReviewEnriched:
    sku, name = PRODUCTS[product_id]
    score = round((rating - 3) / 2.0, 3)
    review_id = review_id or f"00000000-0000-0000-0000-{i:012d}"
    # no LSN: the id's version is a digest of the content, as for a crawled review
    content = (rating, f"review {i}", product_id, when)
    return ReviewEnriched.model_validate(
        {
            "event_id": review_event_id(review_id, op="upsert", source_lsn=None, content=content),
            "review_id": review_id,
            "op": "upsert",
            "source": "app" if i % 2 else "crawl:shop",
            "dedup_key": f"dk-{i}",
            "product_id": product_id,
            "product_sku": sku,
            "product_name": name,
            "product_known": True,
            "rating": rating,
            "title": "t",
            "body": f"review {i}",
            "sentiment_score": score,
            "sentiment_label": "negative" if score < 0 else "positive" if score > 0 else "neutral",
            "event_time": when,
            "enriched_at": when,
        }
    )


def trades(now: datetime, *, hours: int) -> list[TradeExecuted]:
    """One trade per symbol every two minutes over the `hours` before `now`."""
    out = []
    for step in range(hours * 30, 0, -1):
        when = now - timedelta(minutes=2 * step)
        for n, (symbol, asset_class) in enumerate(SYMBOLS.items()):
            trade_id = f"{step}"
            out.append(
                TradeExecuted.model_validate(
                    {
                        "event_id": f"sim:{symbol}:{trade_id}",
                        "venue": "sim",
                        "symbol": symbol,
                        "venue_symbol": symbol,
                        "asset_class": asset_class,
                        "trade_id": trade_id,
                        "price": Decimal(100 * (n + 1)) + Decimal(step % 7),
                        "size": Decimal("0.5"),
                        "side": "buy" if step % 2 else "sell",
                        "event_time": when,
                        "received_at": when,
                    }
                )
            )
    return out


def alerts(now: datetime, *, hours: int) -> list[AlertRaised]:
    return [
        AlertRaised.model_validate(
            {
                "alert_id": f"a{h}",
                "event_id": alert_event_id(f"a{h}"),
                "kind": "price_move",
                "subject": "BTC-USD",
                "severity": "warning",
                "message": "moved",
                "event_time": now - timedelta(hours=h),
                "raised_at": now - timedelta(hours=h),
            }
        )
        for h in range(hours, 0, -3)
    ]


def quotes(now: datetime, *, hours: int) -> list[QuotePolled]:
    """One quote per symbol every five minutes from a polled feed; sizes 0 (not reported)."""
    return [
        quote(symbol, asset_class, now - timedelta(minutes=5 * step), price=Decimal(100 + step % 9))
        for step in range(hours * 12, 0, -1)
        for symbol, asset_class in SYMBOLS.items()
    ]


def quote(symbol: str, asset_class: str, when: datetime, *, price: Decimal) -> QuotePolled:
    return QuotePolled.model_validate(
        {
            "symbol": symbol,
            "asset_class": asset_class,
            "price": price,
            "size": Decimal(0),
            "event_time": when,
            "source": "feed:test",
            "polled_at": when,
            "event_id": f"quote:feed:test:{symbol}:{when.isoformat()}",
        }
    )


def feed_gaps(now: datetime, *, hours: int) -> list[FeedGap]:
    """A gap every six hours, its range and count consistent."""
    return [feed_gap(h, now - timedelta(hours=h)) for h in range(hours, 0, -6)]


def feed_gap(n: int, when: datetime, *, missing_count: int | None = None) -> FeedGap:
    first = 1000 * n
    return FeedGap.model_validate(
        {
            "gap_id": f"sim:BTC-USD:{first}",
            "event_id": f"sim:BTC-USD:{first}",
            "venue": "sim",
            "symbol": "BTC-USD",
            "venue_symbol": "BTC-USD",
            "first_missing": first,
            "last_missing": first + 2,
            "missing_count": 3 if missing_count is None else missing_count,
            "reason": "sequence_skip",
            "event_time": when,
            "detected_at": when,
        }
    )


SEED_RUN_ID = "seed-run"  # dq_results written by the test, not by a check run


def dq_results(now: datetime, *, hours: int) -> list[DataQualityResult]:
    """Results of an earlier hourly run (one check a run)."""
    return [
        DataQualityResult.model_validate(
            {
                "run_id": f"{SEED_RUN_ID}-{h}",
                "event_id": quality_result_event_id(
                    f"{SEED_RUN_ID}-{h}", "market_candles", "freshness", None
                ),
                "check": "freshness",
                "check_type": "freshness",
                "dataset": "market_candles",
                "observed_value": 0.1,
                "threshold": "unit=hour, must_be_less_than=2",
                "passed": True,
                "outcome": "passed",
                "event_time": now - timedelta(hours=h),
                "run_time": now - timedelta(hours=h),
            }
        )
        for h in range(hours, 0, -1)
    ]


def write(
    location: ArchiveLocation,
    dataset: Dataset,
    events: Sequence[Event],
    *,
    start_offset: int = 0,
    topic: str | None = None,
    table_hook: object = None,
) -> list[str]:
    """Objects as the archiver writes them: one per event-time hour, Kafka partition 0,
    offsets counting from `start_offset`. Returns the paths written."""
    schema = schema_for(dataset.model)
    by_hour: dict[object, list[Event]] = defaultdict(list)
    for event in events:
        by_hour[partition_path(getattr(event, dataset.event_time_field))].append(event)
    written = []
    offset = start_offset
    for hour_path in sorted(by_hour):  # type: ignore[type-var]
        chunk = by_hour[hour_path]
        table = encoding.to_table(
            schema,
            chunk,
            topic=topic or dataset.topic.name,
            partition=0,
            offsets=range(offset, offset + len(chunk)),
            archived_at=max(getattr(e, dataset.event_time_field) for e in chunk),
        )
        if callable(table_hook):
            table = table_hook(table)
        path = (
            f"{location.root}/{dataset.name}/{hour_path.path}/"  # type: ignore[attr-defined]
            f"{topic or dataset.topic.name}+0+{offset:019d}.parquet"
        )
        location.filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with location.filesystem.open_output_stream(path) as out:
            out.write(encoding.to_parquet(table))
        written.append(path)
        offset += len(chunk)
    return written


def good_archive(location: ArchiveLocation, now: datetime, *, hours: int = 72) -> None:
    write(location, datasets.MARKET_CANDLES, candles(now, hours=hours))
    write(location, datasets.REVIEWS_ENRICHED, reviews(now, hours=hours))
    write(location, datasets.ALERTS, alerts(now, hours=hours))
    write(location, datasets.MARKET_TRADES, trades(now, hours=hours))
    write(location, datasets.MARKET_QUOTES, quotes(now, hours=hours))
    write(location, datasets.MARKET_FEED_GAPS, feed_gaps(now, hours=hours))
    write(location, datasets.DQ_RESULTS, dq_results(now, hours=hours))


def with_extra_column(table: pa.Table) -> pa.Table:
    """A drifted schema: a column the contract does not have."""
    return table.append_column("review_score_v2", pa.array([1.0] * table.num_rows))


def delete_tree(location: ArchiveLocation, path: str) -> None:
    """Delete every object below `path` one by one (S3Proxy refuses pyarrow's batch
    DeleteObjects without Content-MD5)."""
    selector = pafs.FileSelector(path, recursive=True, allow_not_found=True)
    for info in location.filesystem.get_file_info(selector):
        if info.type == pafs.FileType.File:
            location.filesystem.delete_file(info.path)
