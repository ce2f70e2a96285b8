"""CDC health from the source side: how far the Debezium replication slot trails PostgreSQL's
WAL, and how long ago the newest change event was committed; one verdict for `pulse status`.

Debezium's REST status says RUNNING while its task sits in a retry backoff (issue 25), so the
slot itself is asked. ingest exports the slot figures on /metrics (it holds the database
connection); cdc_processor exports the newest change event's commit time
(`pulse_cdc_last_change_timestamp_seconds`). The verdict is pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# The slot Debezium reads (deploy/debezium/pulse-postgres.json `slot.name`).
DEFAULT_SLOT_NAME = "pulse_slot"

# WAL written since the last position Debezium confirmed; readable by any role (the view and
# both functions need no privilege), so the services' own database user asks it.
SLOT_LAG_SQL = """
SELECT active,
       pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint AS lag_bytes
FROM pg_replication_slots WHERE slot_name = $1
"""


class CdcHealthSettings(BaseSettings):
    """Thresholds that turn CDC health red (`PULSE_CDC_` prefix), read by `pulse status`.

    Debezium confirms its position when Connect commits offsets (every 60 s by default), so a
    healthy slot under load trails by up to a minute of WAL; the default leaves room for that.
    """

    model_config = SettingsConfigDict(frozen=True, extra="ignore", env_prefix="PULSE_CDC_")

    slot_name: str = Field(default=DEFAULT_SLOT_NAME, min_length=1)
    slot_lag_max_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    # Red when no change event was committed for this long (0: never). Only for databases
    # that change all the time: an idle database is healthy with old events.
    change_age_max_s: float = Field(default=0.0, ge=0)


@dataclass(frozen=True, slots=True)
class SlotState:
    exists: bool
    active: bool
    lag_bytes: int | None  # None: the slot has never confirmed a position


class _Connection(Protocol):
    async def fetchrow(self, query: str, *args: Any) -> Any: ...


async def read_slot(conn: _Connection, slot_name: str) -> SlotState:
    """The slot's state through an open asyncpg connection (raises what asyncpg raises)."""
    row = await conn.fetchrow(SLOT_LAG_SQL, slot_name)
    if row is None:
        return SlotState(exists=False, active=False, lag_bytes=None)
    lag = row["lag_bytes"]
    return SlotState(
        exists=True, active=bool(row["active"]), lag_bytes=None if lag is None else int(lag)
    )


def problems(
    slot: SlotState | None,
    *,
    last_change_age_s: float | None,
    settings: CdcHealthSettings,
    unreachable: str = "",
) -> list[str]:
    """Why CDC is unhealthy, one phrase each; empty when healthy. `slot` None: PostgreSQL could
    not be asked (`unreachable` says why)."""
    found: list[str] = []
    if slot is None:
        found.append(f"PostgreSQL unreachable ({unreachable or 'no answer'})")
    elif not slot.exists:
        found.append(f"replication slot {settings.slot_name} missing")
    else:
        if not slot.active:
            found.append(f"slot {settings.slot_name} has no reader (Debezium not connected)")
        if slot.lag_bytes is not None and slot.lag_bytes > settings.slot_lag_max_bytes:
            found.append(
                f"slot lag {slot.lag_bytes:,} B > PULSE_CDC_SLOT_LAG_MAX_BYTES="
                f"{settings.slot_lag_max_bytes:,}"
            )
    if (
        settings.change_age_max_s > 0
        and last_change_age_s is not None
        and last_change_age_s > settings.change_age_max_s
    ):
        found.append(
            f"last change event {last_change_age_s:.0f} s ago > PULSE_CDC_CHANGE_AGE_MAX_S="
            f"{settings.change_age_max_s:g}"
        )
    return found
