"""bench/dashboard/e2e.py's definition of "visible": a tick is visible at the first price frame
of its symbol whose forming candle's `at` is at or past the tick's event time."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import orjson
import pytest
from pulse_cli.scripts import load_script

SCRIPT = Path(__file__).resolve().parents[3] / "bench" / "dashboard" / "e2e.py"


@pytest.fixture(scope="module")
def e2e() -> ModuleType:
    return load_script(SCRIPT, "dashboard_e2e_bench")


def test_a_tick_is_visible_at_the_first_frame_at_or_past_it(e2e: ModuleType) -> None:
    sent = [
        e2e.Sent("A", 1_000, 10.0),
        e2e.Sent("A", 2_000, 10.5),
        e2e.Sent("A", 2_001, 10.6),
        e2e.Sent("B", 1_500, 10.2),
    ]
    frames = {
        # an exact match, then a frame showing a later tick (coalesced past 2_000)
        "A": [(10.3, 1_000), (11.0, 2_500)],
        "B": [(10.4, 1_499), (10.9, 1_500)],  # one microsecond short is not visible yet
    }
    assert e2e.visible_latencies(sent, frames) == pytest.approx([0.3, 0.5, 0.4, 0.7])


def test_an_older_frame_after_a_newer_one_does_not_count(e2e: ModuleType) -> None:
    sent = [e2e.Sent("A", 3_000, 1.0)]
    frames = {"A": [(1.1, 2_000), (1.2, 4_000), (1.3, 3_000)]}
    assert e2e.visible_latencies(sent, frames) == pytest.approx([0.2])


def test_unseen_ticks_and_other_symbols_frames(e2e: ModuleType) -> None:
    sent = [e2e.Sent("A", 5_000, 1.0), e2e.Sent("C", 1, 1.0)]
    frames = {"A": [(1.5, 4_999)], "B": [(1.1, 9_999)]}  # B's frames never count for A or C
    assert e2e.visible_latencies(sent, frames) == [None, None]


def test_price_frame_reads_the_forming_candles_time(e2e: ModuleType) -> None:
    at = datetime(2026, 12, 7, 8, 0, 1, 123456, tzinfo=UTC)
    value = {"symbol": "X-USD", "last": "1", "forming": {"t": 1, "at": at.isoformat()}}
    block = b"event: delta\nid: 7\ndata: " + orjson.dumps({"k": "price:X-USD", "v": value})
    assert e2e.price_frame(block) == ("X-USD", e2e.epoch_us(at))
    assert e2e.epoch_us(at) % 1_000_000 == 123456  # exact microseconds, no float rounding
    no_forming = {"k": "price:X-USD", "v": {**value, "forming": None}}
    assert e2e.price_frame(b"event: delta\nid: 8\ndata: " + orjson.dumps(no_forming)) is None
    alert = {"k": "alert:1", "v": {"id": "1"}}
    assert e2e.price_frame(b"event: delta\nid: 9\ndata: " + orjson.dumps(alert)) is None
