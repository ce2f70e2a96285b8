"""Object names and event-time partition paths."""

from datetime import UTC, datetime, timedelta, timezone

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


def test_object_key_is_a_function_of_its_inputs_only() -> None:
    args = dict(
        root="t/archive/",
        dataset="alerts",
        path=PartitionPath("2026-01-01", 0),
        topic="alerts.v1",
        partition=0,
        start_offset=0,
    )
    assert object_key(**args) == object_key(**args)  # type: ignore[arg-type]
    assert object_key(**args).startswith("t/archive/alerts/dt=2026-01-01/hour=00/")  # type: ignore[arg-type]
