"""The loop with a fake consumer and store: uploads run beside consuming, commits follow them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import ConsumerRecord, TopicPartition
from contracts import datasets
from s3_archiver import encoding
from s3_archiver.archiver import Archiver, routes_for
from s3_archiver.object_store import MemoryObjectStore
from s3_archiver.record_blocks import RecordBlock
from s3_archiver.settings import ArchiverSettings
from servicekit.clock import FakeClock

TOPIC = "candles"
WHEN = datetime(2026, 11, 22, 10, tzinfo=UTC).isoformat()


def candle(i: int) -> bytes:
    decimals = ("open", "high", "low", "close", "volume", "vwap")
    return orjson.dumps(
        {
            "symbol": "BTC",
            "asset_class": "crypto",
            "window_start": WHEN,
            "window_end": WHEN,
            **{name: f"{i}.5" for name in decimals},
            "trade_count": i,
            "sma_period": 20,
            "ema_period": 12,
            "event_time": WHEN,
            "emitted_at": WHEN,
        }
    )


class FakeConsumer:
    """Hands out prepared polls; records what was committed and when."""

    def __init__(self, polls: list[list[int]]) -> None:
        self.polls = polls
        self.commits: list[dict[TopicPartition, int]] = []

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[Any, Any]:
        await asyncio.sleep(0)
        if not self.polls:
            await asyncio.sleep(timeout_ms / 1000)
            return {}
        offsets = self.polls.pop(0)
        records = [
            ConsumerRecord(TOPIC, 0, o, 1_795_000_000_000, 0, None, candle(o), None, 0, 0, [])
            for o in offsets
        ]
        return {TopicPartition(TOPIC, 0): records}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(TOPIC, 0)}

    def pause(self, *tps: TopicPartition) -> None: ...

    def resume(self, *tps: TopicPartition) -> None: ...


class GatedStore(MemoryObjectStore):
    """Uploads wait until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.started = asyncio.Event()

    async def put(self, key: str, data: bytes) -> str:
        self.started.set()
        await self.gate.wait()
        return await super().put(key, data)


def _archiver(consumer: FakeConsumer, store: MemoryObjectStore, **settings: Any) -> Archiver:
    """The archiver over the fake consumer and store; nothing here is dead-lettered."""
    return Archiver(
        settings=ArchiverSettings(
            topic_datasets={TOPIC: "market_candles"}, poll_timeout_ms=10, **settings
        ),
        consumer=consumer,  # type: ignore[arg-type]
        producer=None,  # type: ignore[arg-type]
        store=store,
        routes=routes_for({TOPIC: datasets.MARKET_CANDLES}),
        clock=FakeClock(),
    )


async def run_until(archiver: Archiver, done: Callable[[], bool], *, polls: int) -> None:
    """Run the loop until `done()` (checked every 5 ms, `polls` times at most), then stop it
    and wait for its shutdown."""
    stop = asyncio.Event()
    run = asyncio.create_task(archiver.run(stop))
    for _ in range(polls):
        await asyncio.sleep(0.005)
        if done():
            break
    stop.set()
    await asyncio.wait_for(run, 10)


async def test_consuming_continues_during_an_upload_and_the_commit_waits_for_it() -> None:
    consumer = FakeConsumer([[0, 1], [2, 3], [4, 5]])
    store = GatedStore()
    archiver = _archiver(consumer, store, max_records=2)
    stop = asyncio.Event()
    run = asyncio.create_task(archiver.run(stop))
    await asyncio.wait_for(store.started.wait(), 5)
    for _ in range(200):  # let the loop take every poll while the first upload hangs
        await asyncio.sleep(0.005)
        if not consumer.polls:
            break
    assert consumer.polls == [], "the loop stopped consuming while an object uploaded"
    assert store.objects == {}
    assert all(o == 0 for c in consumer.commits for o in c.values()), "committed before upload"
    store.gate.set()
    stop.set()
    await asyncio.wait_for(run, 10)
    assert len(store.objects) == 3
    assert consumer.commits[-1] == {TopicPartition(TOPIC, 0): 6}


def _slow_parse(archiver: Archiver, seconds: float, *, first_offset: int | None = None) -> None:
    """Make the parser thread sleep `seconds` per poll (only the poll starting at
    `first_offset`, when given) before parsing it as before."""
    parse = archiver._parse_poll

    def slow(batch: dict[TopicPartition, RecordBlock]) -> Any:
        if first_offset is None or next(iter(batch.values())).offsets[0] == first_offset:
            time.sleep(seconds)
        return parse(batch)

    archiver._parse_poll = slow  # type: ignore[method-assign]


async def test_polls_are_buffered_in_fetch_order_when_a_later_one_parses_first() -> None:
    consumer = FakeConsumer([[0, 1], [2, 3], [4, 5]])
    store = MemoryObjectStore()
    archiver = _archiver(consumer, store, max_records=6)
    _slow_parse(archiver, 0.3, first_offset=0)  # the next polls finish parsing first
    await run_until(archiver, lambda: bool(store.objects), polls=400)
    (data,) = store.objects.values()
    assert encoding.read_parquet(data).column("_offset").to_pylist() == [0, 1, 2, 3, 4, 5]
    assert consumer.commits[-1] == {TopicPartition(TOPIC, 0): 6}


async def test_polls_fetched_before_a_stop_are_written_by_the_shutdown() -> None:
    consumer = FakeConsumer([[0, 1], [2, 3], [4, 5]])
    store = MemoryObjectStore()
    archiver = _archiver(consumer, store)
    _slow_parse(archiver, 0.2)  # still parsing when the stop comes
    await run_until(archiver, lambda: not consumer.polls, polls=200)
    (data,) = store.objects.values()
    assert encoding.read_parquet(data).column("_offset").to_pylist() == [0, 1, 2, 3, 4, 5]
    assert consumer.commits[-1] == {TopicPartition(TOPIC, 0): 6}
