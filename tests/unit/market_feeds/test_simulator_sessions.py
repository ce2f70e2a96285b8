"""The simulator's sessions never reuse trade ids (Pulse's trade event_id is built from them)."""

from __future__ import annotations

from datetime import UTC, datetime

from market_feeds.simulator.__main__ import session_first_trade_id
from market_feeds.simulator.server import ExchangeSimulator


def test_each_session_starts_above_the_previous_one() -> None:
    first = session_first_trade_id(None, now_ns=1_796_000_000_000_000_000)
    second = session_first_trade_id(None, now_ns=1_796_000_001_000_000_000)  # 1 s later
    assert second - first == 1_000_000  # room for a million trades a second per symbol
    assert 3 * second < 2**53  # the Coinbase-style sequence stays exact in JSON readers


def test_a_pinned_first_id_is_kept() -> None:
    assert session_first_trade_id(1000) == 1000


def test_the_tapes_start_at_the_session_first_id() -> None:
    sim = ExchangeSimulator(first_trade_id=5_000_000)
    at = datetime(2026, 12, 7, tzinfo=UTC)
    tape = sim.tape("coinbase", "BTC-USD")
    assert [tape.next(at).trade_id for _ in range(2)] == [5_000_000, 5_000_001]
