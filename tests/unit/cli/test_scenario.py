"""The demo scenario is deterministic and holds exactly the signals the demo checks for."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from pulse_cli import scenario

START = datetime(2026, 11, 22, 17, 0, tzinfo=UTC)


def build(run_id: str = "ab12cd34") -> scenario.Scenario:
    return scenario.build(run_id, start=START)


def test_same_run_id_gives_the_same_scenario() -> None:
    assert build() == build()
    assert build("ab12cd34").reviews != build("ff00ff00").reviews


def test_everything_a_run_sends_carries_its_run_id() -> None:
    sc = build()
    assert all("AB12CD34" in p.sku for p in sc.products)
    assert "AB12CD" in sc.equity
    assert all(r.ref.startswith("ab12cd34-") for r in sc.reviews)


def test_every_review_text_is_unique_per_product() -> None:
    # The processor drops a review whose normalized text equals another's on the same product.
    sc = build()
    texts = [(r.product_sku, r.body.casefold()) for r in sc.reviews]
    assert len(set(texts)) == len(texts)


def test_only_the_burst_product_gets_negative_reviews() -> None:
    sc = build()
    negatives = [r for r in sc.reviews if r.negative]
    assert {r.product_sku for r in negatives} == {sc.burst_sku}
    assert all(r.rating <= 2 for r in negatives)
    assert all(r.rating >= 4 for r in sc.reviews if not r.negative)
    assert len(negatives) >= 3  # the processor's default burst threshold


def test_edits_and_deletes_touch_only_positive_reviews_outside_the_burst() -> None:
    sc = build()
    by_ref = {r.ref: r for r in sc.reviews}
    touched = [e.ref for e in sc.edits] + list(sc.deletes)
    assert len(set(touched)) == len(touched)
    assert all(by_ref[ref].product_sku != sc.burst_sku for ref in touched)
    assert all(e.rating == 5 for e in sc.edits)


def test_personal_data_is_in_the_text_and_listed() -> None:
    sc = build()
    with_pii = [r for r in sc.reviews if r.pii]
    assert with_pii
    for review in with_pii:
        assert all(item in review.body for item in review.pii)
        assert all(item in sc.pii_strings for item in review.pii)


def _closes(sc: scenario.Scenario, symbol: str) -> list[Decimal]:
    by_minute: dict[datetime, list[Decimal]] = defaultdict(list)
    for tick in sc.ticks:
        if tick.symbol == symbol:
            by_minute[tick.event_time.replace(second=0, microsecond=0)].append(tick.price)
    return [by_minute[m][-1] for m in sc.candle_minutes]


def _big_moves(closes: list[Decimal], *, pct: Decimal, window: int) -> int:
    moves = 0
    history: list[Decimal] = []
    for close in closes:
        if any(abs(close - then) / then * 100 >= pct for then in history[-window:]):
            moves += 1
            history = []
        history.append(close)
    return moves


def test_the_equity_moves_sharply_once_and_the_cryptos_do_not() -> None:
    sc = build()
    assert _big_moves(_closes(sc, sc.equity), pct=Decimal(5), window=5) == 1
    for crypto in scenario.CRYPTOS:
        assert _big_moves(_closes(sc, crypto), pct=Decimal(5), window=5) == 0


def test_ticks_are_in_event_time_order_and_close_every_expected_minute() -> None:
    sc = build()
    times = [t.event_time for t in sc.ticks]
    assert times == sorted(times)
    last_minute = sc.candle_minutes[-1]
    # A later tick past the close grace closes the last expected minute.
    assert max(times) >= last_minute + timedelta(minutes=1, seconds=10)


def test_ticks_send_decimals_as_strings() -> None:
    body = build().ticks[0].request()
    assert isinstance(body["price"], str) and body["event_time"].endswith("Z")


def test_start_must_be_a_minute_boundary() -> None:
    with pytest.raises(ValueError, match="minute boundary"):
        scenario.build("x", start=START + timedelta(seconds=3))


def test_bad_requests_cover_validation_and_auth() -> None:
    whys = {b.why for b in build().bad_requests}
    assert {"rating out of range", "no API key", "price sent as a float"} <= whys
