"""Crash tests: kill -9 at every step of write-then-commit; the archive ends with each event
exactly once after dedup on (_topic, _partition, _offset), and no object name ever holds two
different contents."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from archiver_harness import ArchiverProcess, Scenario, dedup, values_equal

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]

N = 3000
SETTINGS = dict(max_records=250, window_s=4, idle_grace_s=1)


def assert_same_contents(snapshots: list[dict[str, str]]) -> None:
    seen: dict[str, str] = {}
    for n, snapshot in enumerate(snapshots):
        for key, etag in snapshot.items():
            assert seen.setdefault(key, etag) == etag, f"{key} changed contents in run {n}"


async def wait_until(predicate, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def test_kill_at_every_step_loses_nothing_and_never_rewrites_differently(
    stack_env: dict[str, str], archivers: list[ArchiverProcess], log_dir: Path
) -> None:
    sc = Scenario(stack_env, "crash")
    await sc.create_topics()
    await sc.produce_candles(range(N))
    snapshots: list[dict[str, str]] = []

    def run(**extra: object) -> ArchiverProcess:
        proc = ArchiverProcess(sc, log_dir, **SETTINGS, **extra).start()
        archivers.append(proc)
        return proc

    # (b) crash after an object is written, before its offsets are committed.
    a = run(test_crash_point="after_upload", test_crash_at_flush=2)
    assert a.wait(90) == 86, a.log()
    committed_a = await sc.committed()
    snapshots.append(await sc.listing())
    assert len(snapshots[-1]) >= 2

    # (c) crash right after a commit.
    b = run(test_crash_point="after_commit", test_crash_at_flush=3)
    assert b.wait(90) == 86, b.log()
    committed_b = await sc.committed()
    assert sum(committed_b.values()) > sum(committed_a.values())
    snapshots.append(await sc.listing())

    # (a) kill -9 while buffers are open (records consumed, not yet written).
    c = run()
    await wait_until(
        lambda: (
            c.metric("pulse_events_in_total") > 0 and c.metric("pulse_archive_open_buffers") >= 1
        ),
        60,
        "records consumed into open buffers",
    )
    c.kill9()
    snapshots.append(await sc.listing())

    # Restart and let it finish; SIGTERM then writes whatever is left and commits it.
    d = run()
    rows = await sc.wait_for_rows(N, timeout_s=90)
    assert d.terminate(30) == 0, d.log()
    snapshots.append(await sc.listing())

    assert_same_contents(snapshots)
    unique = dedup(rows)
    assert len(unique) == N
    by_number = {r["trade_count"]: r for r in unique.values()}
    assert sorted(by_number) == list(range(N))
    assert all(values_equal(by_number[i], i) for i in range(N))
    assert await sc.committed() == await sc.end_offsets()  # everything committed in the end
    for key in snapshots[-1]:  # names are <topic>+<partition>+<19-digit offset>
        name = key.rsplit("/", 1)[1]
        assert name.startswith(sc.topic + "+") and len(name.split("+")[2]) == len("0" * 19) + 8
