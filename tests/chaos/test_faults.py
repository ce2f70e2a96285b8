"""Faults under a steady review load through the API: each loses nothing, duplicates nothing
after dedup on `event_id` (on the enriched topic and in the archive's `once` view), and is
over within its bound. The figures go to the table `make chaos` prints.

The tests share one pipeline and run in file order; each first puts the workers it needs in
place. Bounds: a dead worker is replaced in its partitions within 15 s (issue 25); a stack
part's outage, within 30–45 s after the part is back.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable

import pytest
from chaos_harness import (
    ArchivePoller,
    FaultResult,
    Load,
    Pipeline,
    Watcher,
    analyse,
    stack_part,
)
from query.engine import ArchiveUnavailableError, QueryTimeoutError

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(400)]

RATE_PER_S = 100.0
WARM_S = 8.0  # load before the fault: the baseline latency
TAIL_S = 8.0  # load after the fault is over
WORKER_BOUND_S = 15.0

# A fault: runs in a thread while the load goes on; returns (injected at, wall time; how long
# the fault itself lasted, s; a note for the table).
Inject = Callable[[], tuple[float, float, str]]


async def run_fault(
    pipeline: Pipeline,
    results: list[FaultResult],
    name: str,
    inject: Inject,
    *,
    bound_s: Callable[[float], float],
    tail_s: float = TAIL_S,
    archive_gap: bool = False,
) -> FaultResult:
    sku = f"CHAOS-{pipeline.run}-" + re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")[:24]
    await asyncio.to_thread(pipeline.create_product, sku)
    load = Load(pipeline.ingest_url, pipeline.env["PULSE_API_KEY"], sku, RATE_PER_S)
    watcher = Watcher(pipeline.env["KAFKA_BOOTSTRAP_SERVERS"], sku)
    ready, stop_load, stop_watch = asyncio.Event(), asyncio.Event(), asyncio.Event()
    watching = asyncio.create_task(watcher.run(ready, stop_watch))
    await ready.wait()
    with ArchivePoller(pipeline) as poller:
        loading = asyncio.create_task(load.run(stop_load))
        await asyncio.sleep(WARM_S)
        injected, fault_s, note = await asyncio.to_thread(inject)
        await asyncio.sleep(tail_s)
        stop_load.set()
        await loading
        for _ in range(180):  # at most 90 s for the last accepted reviews to come out
            if all(r in watcher.first_seen for r in load.accepted):
                break
            await asyncio.sleep(0.5)
        stop_watch.set()
        await watching
        archive = await asyncio.to_thread(_archive_complete, pipeline, sku, set(load.accepted))
    gaps = poller.gaps(after=injected)
    if archive_gap:
        # The dead archiver's partitions: the longest time without a new object across the
        # kill, less the window every partition waits anyway.
        worst = max(gaps.values(), default=0.0)
        note = f"{note}; archive gaps per partition {_fmt(gaps)} s"
        recovery = max(0.0, worst)
    result = analyse(
        name, load, watcher, injected=injected, fault_s=fault_s,
        bound_s=bound_s(fault_s), archive=archive, note=note,
    )  # fmt: skip
    if archive_gap:
        result.recovery_s = recovery
    results.append(result)
    return result


def _fmt(gaps: dict[int, float]) -> str:
    return "{" + ", ".join(f"{p}: {g:.1f}" for p, g in sorted(gaps.items())) + "}"


def _archive_complete(pipeline: Pipeline, sku: str, wanted: set[str]) -> dict[str, tuple[int, int]]:
    """The archive's `once` view for the SKU, once it holds every accepted review (or after
    90 s: whatever it holds then)."""
    deadline = time.monotonic() + 90
    while True:
        try:
            counts = pipeline.archive_counts(sku)
        except (QueryTimeoutError, ArchiveUnavailableError):
            if time.monotonic() > deadline:
                raise
            counts = {}
        if wanted <= set(counts) or time.monotonic() > deadline:
            return counts
        time.sleep(2)


def check(result: FaultResult) -> None:
    assert result.accepted > 0, "the load got no 2xx at all"
    assert result.lost == 0, f"{result.lost} accepted reviews never reached the enriched topic"
    assert result.duplicates == 0, f"{result.duplicates} reviews under two event ids"
    assert result.archive_lost == 0, f"{result.archive_lost} accepted reviews not archived"
    assert result.archive_duplicates == 0, f"{result.archive_duplicates} duplicates in `once`"
    assert result.recovery_s <= result.bound_s, (
        f"recovery {result.recovery_s:.1f} s > bound {result.bound_s:.1f} s"
    )


def ensure(pipeline: Pipeline, *, cdc: tuple[int, ...], archivers: tuple[int, ...]) -> None:
    """Exactly these workers running (others stopped with SIGTERM: a clean leave)."""
    wanted = {pipeline.cdc_spec(n).name: pipeline.cdc_spec(n) for n in cdc}
    wanted |= {pipeline.archiver_spec(n).name: pipeline.archiver_spec(n) for n in archivers}
    for name in pipeline.running("cdc_processor") + pipeline.running("s3_archiver"):
        if name not in wanted:
            pipeline.stop(name)
    for spec in wanted.values():
        pipeline.start(spec, wait=False)
    for spec in wanted.values():
        pipeline.wait_healthy(spec)
    _wait_stable(pipeline, timeout_s=30)


def _wait_stable(pipeline: Pipeline, *, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    state = pipeline.consumer_group_state()
    while state != "Stable" and time.monotonic() < deadline:
        time.sleep(0.3)
        state = pipeline.consumer_group_state()
    return state


# --- worker faults -------------------------------------------------------------------


async def test_kill9_cdc_processor_is_replaced_within_15_s(
    pipeline: Pipeline, results: list[FaultResult]
) -> None:
    """The only worker dies; it is restarted at once, as an orchestrator would."""
    await asyncio.to_thread(ensure, pipeline, cdc=(1,), archivers=(1,))

    def inject() -> tuple[float, float, str]:
        injected = time.time()
        pipeline.kill9("cdc_processor-1")
        started = time.monotonic()
        pipeline.start(pipeline.cdc_spec(1))
        return injected, time.monotonic() - started, "restarted at once"

    check(
        await run_fault(
            pipeline, results, "kill-9 cdc_processor", inject, bound_s=lambda _: WORKER_BOUND_S
        )
    )


async def test_second_worker_joining_and_dying(
    pipeline: Pipeline, results: list[FaultResult]
) -> None:
    """A second worker joins (a rebalance), serves, then is killed: the first takes its
    partitions back within 15 s of the kill."""
    await asyncio.to_thread(ensure, pipeline, cdc=(1,), archivers=(1,))

    def inject() -> tuple[float, float, str]:
        injected = time.time()
        started = time.monotonic()
        pipeline.start(pipeline.cdc_spec(2))
        state = _wait_stable(pipeline, timeout_s=30)
        time.sleep(3)
        joined_s = time.monotonic() - started
        pipeline.kill9("cdc_processor-2")
        return injected, joined_s, f"joined in {joined_s:.1f} s (group {state}), then kill -9"

    result = await run_fault(
        pipeline,
        results,
        "2nd worker joins, dies",
        inject,
        bound_s=lambda joined: joined + WORKER_BOUND_S,
    )
    check(result)


async def test_kill9_one_of_two_archivers(pipeline: Pipeline, results: list[FaultResult]) -> None:
    """Two archivers share the partitions; one is killed. Its partitions go unwritten for the
    session timeout (10 s) plus the rebalance, then the survivor archives them."""
    await asyncio.to_thread(ensure, pipeline, cdc=(1,), archivers=(1, 2))

    def inject() -> tuple[float, float, str]:
        injected = time.time()
        pipeline.kill9("s3_archiver-1")
        return injected, 0.0, "survivor takes over"

    # A normal gap is the archiver's window (4 s) and a listing interval; 15 s beyond that.
    result = await run_fault(
        pipeline, results, "kill-9 1 of 2 archivers", inject,
        bound_s=lambda _: WORKER_BOUND_S + 5.0, tail_s=25.0, archive_gap=True,
    )  # fmt: skip
    check(result)


async def test_kill9_during_rebalance_three_workers_two_archivers(
    pipeline: Pipeline, results: list[FaultResult]
) -> None:
    """Two more workers and a second archiver join; while the group rebalances, the oldest
    worker is killed."""
    await asyncio.to_thread(ensure, pipeline, cdc=(1,), archivers=(2,))

    def inject() -> tuple[float, float, str]:
        for spec in (pipeline.cdc_spec(2), pipeline.cdc_spec(3), pipeline.archiver_spec(1)):
            pipeline.start(spec, wait=False)
        deadline = time.monotonic() + 90
        state = pipeline.consumer_group_state()
        while state == "Stable" and time.monotonic() < deadline:
            time.sleep(0.1)
            state = pipeline.consumer_group_state()
        injected = time.time()
        pipeline.kill9("cdc_processor-1")
        started = time.monotonic()
        for spec in (pipeline.cdc_spec(2), pipeline.cdc_spec(3), pipeline.archiver_spec(1)):
            pipeline.wait_healthy(spec)
        final = _wait_stable(pipeline, timeout_s=60)
        return injected, time.monotonic() - started, f"killed in state {state}; then {final}"

    result = await run_fault(
        pipeline, results, "kill-9 in rebalance (3 cdc, 2 arch)", inject,
        bound_s=lambda _: WORKER_BOUND_S,
    )  # fmt: skip
    check(result)


# --- stack faults ---------------------------------------------------------------------


def _restart(part: str) -> Callable[[], tuple[float, float, str]]:
    def inject() -> tuple[float, float, str]:
        injected = time.time()
        took = stack_part("restart", part)
        return injected, took, f"stack.py restart {part}"

    return inject


async def test_postgresql_restart(pipeline: Pipeline, results: list[FaultResult]) -> None:
    await asyncio.to_thread(ensure, pipeline, cdc=(2,), archivers=(1,))
    result = await run_fault(
        pipeline, results, "PostgreSQL restart", _restart("postgres"), bound_s=lambda s: s + 30
    )
    check(result)


async def test_connect_restart(pipeline: Pipeline, results: list[FaultResult]) -> None:
    await asyncio.to_thread(ensure, pipeline, cdc=(2,), archivers=(1,))
    result = await run_fault(
        pipeline, results, "Connect restart", _restart("connect"), bound_s=lambda s: s + 30
    )
    check(result)


async def test_kafka_restart(pipeline: Pipeline, results: list[FaultResult]) -> None:
    await asyncio.to_thread(ensure, pipeline, cdc=(2,), archivers=(1,))
    result = await run_fault(
        pipeline, results, "Kafka restart", _restart("kafka"), bound_s=lambda s: s + 45, tail_s=15.0
    )
    check(result)


S3_OUTAGE_S = 30.0


async def test_s3_outage(pipeline: Pipeline, results: list[FaultResult]) -> None:
    """S3Proxy stopped for 30 s: the stream goes on, the archive catches up once it is back."""
    await asyncio.to_thread(ensure, pipeline, cdc=(2,), archivers=(1,))

    def inject() -> tuple[float, float, str]:
        injected = time.time()
        stack_part("down", "s3proxy")
        time.sleep(S3_OUTAGE_S)
        stack_part("up", "s3proxy")
        return injected, time.time() - injected, f"S3Proxy down {S3_OUTAGE_S:g} s"

    result = await run_fault(
        pipeline, results, "S3 outage", inject, bound_s=lambda s: s + 30, tail_s=12.0,
        archive_gap=True,
    )  # fmt: skip
    check(result)
