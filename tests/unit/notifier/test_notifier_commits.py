"""The consume loop's durability order: a Kafka offset is committed only after an fsync of the
outbox that started after the batch's transaction (commits run at synchronous=NORMAL)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from aiokafka import TopicPartition
from notifier.notifier import Notifier
from notifier.outbox import Outbox
from notifier.routing import simple_router
from servicekit.clock import FakeClock

T = TypeVar("T")


class RecordingConsumer:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.log.append(f"commit {sorted(offsets.values())}")


class RecordingDisk:
    """The sync thread, inline, recording which outbox calls ran."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        self.log.append(fn.__name__)
        return fn(*args, **kwargs)


async def test_offsets_are_committed_only_after_the_outbox_is_synced(tmp_path: Path) -> None:
    log: list[str] = []
    outbox = Outbox(tmp_path / "outbox.journal")
    notifier = Notifier(
        consumer=RecordingConsumer(log),  # type: ignore[arg-type]  # only commit() is used
        producer=None,  # type: ignore[arg-type]  # no DLQ record in this test
        outbox=outbox,
        disk=RecordingDisk(log),  # type: ignore[arg-type]
        router=simple_router(["a"]),
        silences=None,  # type: ignore[arg-type]
        dispatchers={},
        clock=FakeClock(),
        dlq_topic="dlq",
        poll_max_records=10,
    )
    stop = asyncio.Event()
    committer = asyncio.create_task(notifier._commit_loop(stop))
    notifier._to_commit = {TopicPartition("alerts.v1", 0): 5}
    notifier._commit_due.set()
    for _ in range(5):
        await asyncio.sleep(0)
    stop.set()
    notifier._commit_due.set()
    await asyncio.wait_for(committer, 5)
    assert log[:2] == ["sync", "commit [5]"]
    outbox.close()
