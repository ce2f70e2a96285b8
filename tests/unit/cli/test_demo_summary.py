"""The demo's in-vs-out summary: a failed run started behind a processor backlog says so."""

from __future__ import annotations

from datetime import UTC, datetime
from io import StringIO

import orjson
import pytest
from pulse_cli import demo
from rich.console import Console

START = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def summary(*, backlog: int | None, actual: int) -> str:
    sc = demo.demo_scenario("abcd1234", scale=0.3, start=START)
    stages = [demo.Stage("enriched: app reviews", 10, actual)]
    report = demo.DemoReport(
        "abcd1234", sc, demo.ApiOutcome(), set(), stages, "s3://x", 1.0, START, backlog
    )
    out = StringIO()
    demo.print_summary(Console(file=out, width=200), report)
    return out.getvalue()


@pytest.mark.parametrize(
    ("backlog", "actual", "hinted"),
    [
        (500_000, 0, True),  # failed behind a backlog: the cause is named
        (500_000, 10, False),  # passed: nothing to explain
        (demo.BACKLOG_MAX, 0, False),  # within what a run tolerates
        (None, 0, False),  # lag unknown
    ],
)
def test_a_failed_run_behind_a_backlog_names_it(
    backlog: int | None, actual: int, hinted: bool
) -> None:
    text = summary(backlog=backlog, actual=actual)
    assert ("500000 records behind" in text) is hinted
    assert ("Demo PASS" in text) is (actual == 10)


def test_feed_tally_counts_venues_and_trades_published_twice() -> None:
    def trade(venue: str, symbol: str, trade_id: int) -> bytes:
        return orjson.dumps(
            {"event_id": f"{venue}:{symbol}:{trade_id}", "venue": venue, "symbol": f"SIM-{symbol}"}
        )

    values = [
        trade("coinbase", "BTC-USD", 1),
        trade("binance", "BTC-USD", 1),  # another venue's trade 1: a different event
        trade("coinbase", "BTC-USD", 1),  # the same event again
        orjson.dumps({"event_id": "kraken:X:1", "venue": "kraken", "symbol": "BTC-USD"}),
        b"not json",
        None,
    ]
    tally = demo.tally_trades(values)
    assert tally.venues == {"coinbase", "binance"}  # the non-SIM symbol is not the demo's
    assert tally.trades == 3 and tally.duplicates == 1
