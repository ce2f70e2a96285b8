"""The CDC health verdict: which source-side figures turn `pulse status` red."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from servicekit.cdc_health import CdcHealthSettings, SlotState, problems, read_slot

SETTINGS = CdcHealthSettings(slot_lag_max_bytes=1_000_000, change_age_max_s=0)


def test_active_slot_within_threshold_is_healthy() -> None:
    slot = SlotState(exists=True, active=True, lag_bytes=999_999)
    assert problems(slot, last_change_age_s=5000.0, settings=SETTINGS) == []


def test_lag_past_threshold_is_red_and_names_the_setting() -> None:
    slot = SlotState(exists=True, active=True, lag_bytes=1_000_001)
    [problem] = problems(slot, last_change_age_s=1.0, settings=SETTINGS)
    assert "1,000,001 B" in problem
    assert "PULSE_CDC_SLOT_LAG_MAX_BYTES=1,000,000" in problem


def test_slot_without_reader_is_red_even_with_no_lag() -> None:
    slot = SlotState(exists=True, active=False, lag_bytes=0)
    [problem] = problems(slot, last_change_age_s=1.0, settings=SETTINGS)
    assert "no reader" in problem


def test_missing_slot_and_unreachable_database_are_red() -> None:
    missing = problems(
        SlotState(exists=False, active=False, lag_bytes=None),
        last_change_age_s=None,
        settings=SETTINGS,
    )
    assert missing == ["replication slot pulse_slot missing"]
    down = problems(None, last_change_age_s=None, settings=SETTINGS, unreachable="refused")
    assert down == ["PostgreSQL unreachable (refused)"]


def test_change_age_threshold_applies_only_when_set() -> None:
    slot = SlotState(exists=True, active=True, lag_bytes=0)
    strict = CdcHealthSettings(change_age_max_s=60)
    assert problems(slot, last_change_age_s=61.0, settings=SETTINGS) == []
    [problem] = problems(slot, last_change_age_s=61.0, settings=strict)
    assert "PULSE_CDC_CHANGE_AGE_MAX_S=60" in problem
    assert problems(slot, last_change_age_s=59.0, settings=strict) == []


def test_thresholds_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULSE_CDC_SLOT_LAG_MAX_BYTES", "2048")
    assert CdcHealthSettings().slot_lag_max_bytes == 2048
    monkeypatch.setenv("PULSE_CDC_SLOT_LAG_MAX_BYTES", "-1")
    with pytest.raises(ValidationError, match="slot_lag_max_bytes"):
        CdcHealthSettings()


class _Conn:
    def __init__(self, row: dict[str, object] | None) -> None:
        self.row = row
        self.args: tuple[object, ...] = ()

    async def fetchrow(self, query: str, *args: object) -> dict[str, object] | None:
        self.args = args
        return self.row


async def test_read_slot_maps_the_row_and_a_missing_slot() -> None:
    conn = _Conn({"active": True, "lag_bytes": 4120})
    assert await read_slot(conn, "pulse_slot") == SlotState(True, True, 4120)
    assert conn.args == ("pulse_slot",)
    assert await read_slot(_Conn(None), "gone") == SlotState(False, False, None)
