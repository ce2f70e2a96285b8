"""Shared builders for the cdc_processor unit tests: golden Debezium bytes, flows on dicts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from cdc_processor import alerts, candles
from cdc_processor.decoding import Tick
from cdc_processor.enrichment import Enricher
from cdc_processor.language import LanguageDetector
from cdc_processor.pii import Scrubber, detect
from cdc_processor.pipeline import ReviewFlow, TickFlow
from cdc_processor.sentiment import SentimentScorer
from contracts.rows import AssetClass
from servicekit.clock import FakeClock

GOLDEN = Path(__file__).parent / "golden"
T0 = datetime(2026, 11, 22, 17, 0, tzinfo=UTC)


def golden(name: str) -> bytes:
    return (GOLDEN / f"{name}.json").read_bytes()


def golden_doc(name: str) -> dict[str, Any]:
    document: dict[str, Any] = orjson.loads(golden(name))
    return document


def envelope(
    op: str,
    *,
    after: dict[str, Any] | None = None,
    before: dict[str, Any] | None = None,
    table: str = "reviews",
    lsn: int = 100,
    ts_ms: int = 1795366800123,
) -> bytes:
    return orjson.dumps(
        {
            "before": before,
            "after": after,
            "source": {
                "connector": "postgresql",
                "name": "pulse",
                "ts_ms": ts_ms,
                "snapshot": "false",
                "db": "pulse",
                "schema": "public",
                "table": table,
                "lsn": lsn,
            },
            "op": op,
            "ts_ms": ts_ms,
        }
    )


def review_row(
    review_id: str,
    *,
    product_id: int = 1,
    rating: int = 4,
    body: str = "Works well enough for me",
    title: str | None = "Ok",
    author: str | None = "Jane Doe",
    email: str | None = "jane@example.com",
    locale: str | None = "en",
    at: datetime = T0,
) -> dict[str, Any]:
    return {
        "id": review_id,
        "product_id": product_id,
        "rating": rating,
        "title": title,
        "body": body,
        "author_name": author,
        "author_email": email,
        "locale": locale,
        "source": "app",
        "external_id": None,
        "created_at": at.isoformat(),
        "updated_at": at.isoformat(),
    }


def product_row(product_id: int = 1, sku: str = "KTL-100") -> dict[str, Any]:
    return {"id": product_id, "sku": sku, "name": "Kettle", "brand": "Acme", "category": "kitchen"}


def tick_row(
    tick_id: int, *, symbol: str = "BTC-USD", price: str = "100", size: str = "1", at: datetime = T0
) -> dict[str, Any]:
    return {
        "id": tick_id,
        "symbol": symbol,
        "asset_class": "crypto",
        "price": price,
        "size": size,
        "event_time": at.isoformat(),
        "venue": "demo",
    }


def quote(symbol: str, price: str, at: datetime, *, size: str = "1", source: str = "feed") -> bytes:
    return orjson.dumps(
        {
            "symbol": symbol,
            "asset_class": "equity" if "-" not in symbol else "crypto",
            "price": price,
            "size": size,
            "event_time": at.isoformat(),
            "source": source,
            "polled_at": at.isoformat(),
        }
    )


REVIEW_ALERTS = alerts.ReviewAlertConfig(
    negative_rating_max=2,
    negative_text_score=-0.5,
    burst_window=timedelta(minutes=10),
    burst_threshold=3,
)


def tick(n: int, price: str, at_s: float, *, size: str = "1", symbol: str = "BTC-USD") -> Tick:
    """Crypto tick `t<n>` at T0 + `at_s` seconds."""
    return Tick(
        f"t{n}",
        symbol,
        AssetClass.CRYPTO,
        Decimal(price),
        Decimal(size),
        T0 + timedelta(seconds=at_s),
    )


CANDLE_CONFIG = candles.CandleConfig(grace=timedelta(seconds=5), sma_period=3, ema_period=3)
MARKET_ALERTS = alerts.MarketAlertConfig(
    move_pct=Decimal("5"), move_window=timedelta(minutes=5), stale_after=timedelta(seconds=60)
)


def make_enricher(key: bytes = b"test-key") -> Enricher:
    return Enricher(
        scrubber=Scrubber(),
        scorer=SentimentScorer(),
        detector=LanguageDetector(expected=("en", "fr", "de")),
        pseudonym_key=key,
    )


def review_flow(clock: FakeClock | None = None) -> ReviewFlow:
    return ReviewFlow(
        enricher=make_enricher(),
        alert_config=REVIEW_ALERTS,
        orphan_max=100,
        products={},
        orphans={},
        dedup={},
        bursts={},
        clock=clock or FakeClock(T0),
    )


def tick_flow(clock: FakeClock | None = None) -> TickFlow:
    return TickFlow(
        candle_config=CANDLE_CONFIG,
        market_config=MARKET_ALERTS,
        states={},
        stale=alerts.StaleFeedWatch(stale_after=timedelta(seconds=60)),
        clock=clock or FakeClock(T0),
    )


def pii_tally(
    cases: Iterable[tuple[str, str | None, Iterable[tuple[str, str]]]],
) -> tuple[Counter[str], Counter[str], Counter[str]]:
    """Per PII kind, `pii.detect`'s true positives, false positives and misses over
    `(text, locale, labels)` cases, a label being `(kind, value)`: a span counts once its
    kind and text match a label not matched yet."""
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    for text, locale, labels in cases:
        wanted = list(labels)
        for kind, start, end in detect(text, locale=locale):
            found = (kind.value, text[start:end])
            if found in wanted:
                tp[kind.value] += 1
                wanted.remove(found)
            else:
                fp[kind.value] += 1
        for kind_name, _value in wanted:
            fn[kind_name] += 1
    return tp, fp, fn


def precision_recall(
    kind: str, tp: Counter[str], fp: Counter[str], fn: Counter[str]
) -> tuple[float, float]:
    """`kind`'s precision and recall from `pii_tally`'s counts (1.0 where nothing counts)."""
    precision = tp[kind] / (tp[kind] + fp[kind]) if tp[kind] + fp[kind] else 1.0
    recall = tp[kind] / (tp[kind] + fn[kind]) if tp[kind] + fn[kind] else 1.0
    return precision, recall
