"""Object names and event-time partition paths."""

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from s3_archiver.object_keys import PartitionPath, object_key, partition_path


def test_partition_path_uses_utc_hour_of_event_time() -> None:
    paris = timezone(timedelta(hours=1))
    assert partition_path(datetime(2026, 11, 23, 0, 30, tzinfo=paris)) == PartitionPath(
        "2026-11-22", 23
    )
    assert partition_path(datetime(2026, 1, 2, 5, tzinfo=UTC)).path == "dt=2026-01-02/hour=05"


def test_naive_event_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        partition_path(datetime(2026, 1, 1))


def test_object_key_pads_start_offset_to_19_digits() -> None:
    key = object_key(
        root="archive",
        dataset="market_candles",
        path=PartitionPath("2026-11-22", 7),
        topic="market.candles.v1",
        partition=2,
        start_offset=1234,
    )
    assert key == (
        "archive/market_candles/dt=2026-11-22/hour=07/"
        "market.candles.v1+2+0000000000000001234.parquet"
    )


BASE: dict[str, Any] = dict(
    root="t/archive/",
    dataset="alerts",
    path=PartitionPath("2026-01-01", 0),
    topic="alerts.v1",
    partition=0,
    start_offset=0,
)


def test_object_key_is_spelled_out_from_its_inputs() -> None:
    # The root's slashes are trimmed; the name is the same in every process (a rewrite after a
    # crash must land on it), so it is compared whole.
    assert object_key(**BASE) == (
        "t/archive/alerts/dt=2026-01-01/hour=00/alerts.v1+0+0000000000000000000.parquet"
    )


@pytest.mark.parametrize(
    ("name", "other"),
    [
        ("root", "archive"),
        ("dataset", "reviews"),
        ("path", PartitionPath("2026-01-01", 1)),
        ("path", PartitionPath("2026-01-02", 0)),
        ("topic", "alerts.v2"),
        ("partition", 1),
        ("start_offset", 1),
    ],
)
def test_each_input_changes_the_key(name: str, other: Any) -> None:
    # Two buffers that differ in any one input must never overwrite each other's object.
    assert object_key(**{**BASE, name: other}) != object_key(**BASE)


def test_keys_of_a_partition_sort_in_offset_order() -> None:
    # Listing a prefix returns keys in byte order: zero-padding makes that offset order,
    # up to the largest int64 offset.
    offsets = [0, 9, 10, 99, 100, 1234, 10**18, 2**63 - 1]
    keys = [object_key(**{**BASE, "start_offset": o}) for o in offsets]
    assert sorted(keys) == keys


@pytest.mark.parametrize(("name", "value"), [("start_offset", -1), ("partition", -1)])
def test_negative_offset_or_partition_is_refused(name: str, value: int) -> None:
    with pytest.raises(ValueError, match="non-negative"):
        object_key(**{**BASE, name: value})
