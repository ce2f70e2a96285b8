"""`pulse status`'s CDC line: the replication slot's lag and the newest change event's age,
asked of PostgreSQL and Kafka directly (not of Debezium's REST status, which says RUNNING
while its task waits in a retry backoff), with the verdict from `servicekit.cdc_health`."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import asyncpg
from servicekit import cdc_health

from pulse_cli import kafka_scan

_TIMEOUT_S = 3.0


@dataclass(frozen=True, slots=True)
class CdcSourceReport:
    slot: cdc_health.SlotState | None
    last_change_age_s: float | None
    problems: list[str]

    @property
    def healthy(self) -> bool:
        return not self.problems


async def _slot(database_url: str, slot_name: str) -> tuple[cdc_health.SlotState | None, str]:
    try:
        conn = await asyncpg.connect(database_url, timeout=_TIMEOUT_S)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    try:
        return await asyncio.wait_for(cdc_health.read_slot(conn, slot_name), _TIMEOUT_S), ""
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    finally:
        await conn.close(timeout=_TIMEOUT_S)


async def check(
    env: dict[str, str], settings: cdc_health.CdcHealthSettings | None = None
) -> CdcSourceReport:
    """Ask PostgreSQL (`DATABASE_URL`) and Kafka (`KAFKA_BOOTSTRAP_SERVERS`) at once."""
    settings = settings or cdc_health.CdcHealthSettings()
    (slot, why), newest_ms = await asyncio.gather(
        _slot(env.get("DATABASE_URL", ""), settings.slot_name),
        kafka_scan.newest_change_ms(env.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:59092")),
    )
    age_s = None if newest_ms is None else max(0.0, time.time() - newest_ms / 1000)
    problems = cdc_health.problems(
        slot, last_change_age_s=age_s, settings=settings, unreachable=why
    )
    return CdcSourceReport(slot=slot, last_change_age_s=age_s, problems=problems)
