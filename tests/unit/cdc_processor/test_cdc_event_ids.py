"""Every record cdc_processor emits carries a deterministic `event_id`: the same input gives
the same id (a re-emission after a crash is recognisably the same event), a changed review a
new one."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from decimal import Decimal

import orjson
from cdc_fixtures import CANDLE_CONFIG, T0, make_enricher, tick, tick_flow
from cdc_processor.decoding import ReviewInput, Tick
from contracts import topics
from servicekit.kafka import dead_letter


def review(**over: object) -> ReviewInput:
    fields: dict[str, object] = {
        "review_id": "6f1c8a52-0000-4000-8000-000000000001",
        "source": "app",
        "deleted": False,
        "product_id": 1,
        "product_sku": "KTL-100",
        "rating": Decimal(2),
        "title": "Meh",
        "body": "The kettle leaks.",
        "author_name": "Ann",
        "author_email": "ann@example.com",
        "locale": "en",
        "event_time": T0,
        "source_lsn": 1000,
    }
    fields.update(over)
    return ReviewInput(**fields)  # type: ignore[arg-type]


def test_the_same_review_enriched_twice_has_the_same_id() -> None:
    first = make_enricher().enrich(review(), None, now=T0)
    again = make_enricher().enrich(review(), None, now=T0 + timedelta(minutes=5))
    assert first.event_id and first.event_id == again.event_id
    assert first.enriched_at != again.enriched_at  # ids do not depend on when it ran


def test_a_changed_review_gets_a_new_id() -> None:
    enricher = make_enricher()
    original = enricher.enrich(review(), None, now=T0).event_id
    # A CDC change: a new LSN (the row was updated), whatever the content.
    assert enricher.enrich(review(source_lsn=2000), None, now=T0).event_id != original
    # Deleting the review is a new event too.
    assert enricher.enrich(review(deleted=True), None, now=T0).event_id != original
    # A crawled review has no LSN: its content is its version.
    crawled = review(review_id="crawl:shop:r1", source="crawl:shop", source_lsn=None)
    same = enricher.enrich(crawled, None, now=T0).event_id
    assert enricher.enrich(crawled, None, now=T0 + timedelta(hours=1)).event_id == same
    edited = dataclasses.replace(crawled, body="The kettle leaks badly.")
    assert enricher.enrich(edited, None, now=T0).event_id != same


def emitted(ticks: list[Tick]) -> list[dict[str, object]]:
    flow = tick_flow()
    out: list[dict[str, object]] = []
    for offset, t in enumerate(ticks):
        outputs, _ = flow.on_tick(t, position=("q", 0, offset))
        out += [orjson.loads(o.value) for o in outputs if o.value is not None]
    return out


def test_candles_and_alerts_replayed_have_the_same_ids() -> None:
    # A 20 % move inside one minute: a candle and, past the 5 % threshold, a price alert.
    ticks = [tick(1, "100", 1), tick(2, "120", 30), tick(3, "121", 61 + 5 + 1)]
    first, again = emitted(ticks), emitted(ticks)
    ids = [r["event_id"] for r in first]
    assert ids and all(ids) and ids == [r["event_id"] for r in again]
    assert len(set(ids)) == len(ids)
    assert any(str(i).startswith("candle:BTC-USD:") for i in ids)
    # A different candle for the same window (another close) is another event.
    changed = emitted([tick(1, "100", 1), tick(2, "119", 30), tick(3, "121", 67)])
    candle_ids = {r["event_id"] for r in first if str(r["event_id"]).startswith("candle:")}
    assert candle_ids.isdisjoint(r["event_id"] for r in changed)
    assert CANDLE_CONFIG.grace == timedelta(seconds=5)


@dataclasses.dataclass
class Source:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def test_a_dead_letter_is_identified_by_its_source_record() -> None:
    src = Source(topics.REVIEWS_CDC.name, 2, 41, b"k", b"{bad")
    one = orjson.loads(dead_letter(src, service="cdc_processor", reason="x", detail="d", now=T0)[1])
    two = orjson.loads(
        dead_letter(src, service="cdc_processor", reason="x", detail="d", now=T0 + timedelta(1))[1]
    )
    assert one["event_id"] == two["event_id"] == f"dlq:cdc_processor:{src.topic}:2:41"
    other = dataclasses.replace(src, offset=42)
    three = orjson.loads(
        dead_letter(other, service="cdc_processor", reason="x", detail="d", now=T0)[1]
    )
    assert three["event_id"] != one["event_id"]


def test_a_forming_candle_is_identified_by_its_window_state() -> None:
    from cdc_processor import candles

    flow = tick_flow()
    for offset, t in enumerate([tick(1, "100", 1), tick(2, "101", 2)]):
        flow.on_tick(t, position=("q", 0, offset))
    (state,) = flow.states.values()
    one = candles.forming(state, "BTC-USD", now=T0)
    two = candles.forming(state, "BTC-USD", now=T0 + timedelta(seconds=1))
    assert one is not None and two is not None
    assert one.event_id and one.event_id == two.event_id
    flow.on_tick(tick(3, "102", 3), position=("q", 0, 2))
    (state,) = flow.states.values()
    three = candles.forming(state, "BTC-USD", now=T0)
    assert three is not None and three.event_id != one.event_id
