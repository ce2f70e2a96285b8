"""Stall detection for liveness, and stale-feed alerts on a fake clock."""

from __future__ import annotations

from datetime import timedelta

from cdc_fixtures import T0
from cdc_processor.alerts import StaleFeedWatch
from cdc_processor.liveness import StallDetector
from servicekit.clock import FakeClock


def test_partition_with_growing_lag_and_no_progress_is_stalled() -> None:
    d = StallDetector(stall_after_s=30)
    assert not d.sample("t", 0, position=10, highwater=12, now=0)
    assert not d.sample("t", 0, position=10, highwater=20, now=20)
    assert d.sample("t", 0, position=10, highwater=25, now=31)
    assert d.stalled(now=31) == [("t", 0)]
    assert not d.sample("t", 0, position=11, highwater=25, now=32)  # progress clears it


def test_idle_partition_without_new_records_is_not_stalled() -> None:
    d = StallDetector(stall_after_s=30)
    d.sample("t", 1, position=10, highwater=15, now=0)
    assert not d.sample("t", 1, position=10, highwater=15, now=100)
    assert not d.sample("t", 2, position=10, highwater=10, now=100)


def test_stale_feed_alerts_once_per_gap_with_stable_id() -> None:
    clock = FakeClock(T0)
    watch = StaleFeedWatch(stale_after=timedelta(seconds=60))
    watch.seen("ETH-USD", event_time=T0, monotonic=clock.monotonic())
    assert watch.due(monotonic=clock.monotonic(), now=clock.now()) == []
    clock.advance(61)
    [alert] = watch.due(monotonic=clock.monotonic(), now=clock.now())
    assert alert.kind == "stale_feed" and alert.subject == "ETH-USD"
    clock.advance(61)
    assert watch.due(monotonic=clock.monotonic(), now=clock.now()) == []
    again = StaleFeedWatch(stale_after=timedelta(seconds=60))
    again.seen("ETH-USD", event_time=T0, monotonic=0)
    assert again.due(monotonic=100, now=clock.now())[0].alert_id == alert.alert_id
