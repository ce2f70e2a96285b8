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


async def test_bad_records_go_to_the_dlq_with_the_reason_that_fits(tmp_path: Path) -> None:
    """Alerts are validated straight from their bytes: bytes that are not JSON are
    `undecodable`, JSON that is not an alert is `schema_invalid`; a good alert is queued."""
    import orjson
    from notifier_factories import review_alert
    from servicekit.kafka import encode_event

    sent: list[tuple[str, bytes]] = []

    class RecordingProducer:
        async def send(
            self, topic: str, value: bytes, *, key: bytes | None
        ) -> asyncio.Future[None]:
            sent.append((topic, value))
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done

    class Poked:
        def poke(self) -> None:
            return None

    class Record:
        def __init__(self, offset: int, value: bytes) -> None:
            self.topic, self.partition, self.offset, self.key, self.value = (
                "alerts.v1",
                0,
                offset,
                b"k",
                value,
            )

    outbox = Outbox(tmp_path / "outbox.journal")
    notifier = Notifier(
        consumer=None,  # type: ignore[arg-type]  # handle_batch only
        producer=RecordingProducer(),  # type: ignore[arg-type]
        outbox=outbox,
        disk=None,  # type: ignore[arg-type]
        router=simple_router(["a"]),
        silences=type("S", (), {"current": []})(),  # type: ignore[arg-type]
        dispatchers={"a": Poked()},  # type: ignore[dict-item]
        clock=FakeClock(),
        dlq_topic="dlq",
        poll_max_records=10,
    )
    good = encode_event(review_alert(1))
    records = [Record(0, b"{not json"), Record(1, b"[1]"), Record(2, good), Record(3, b"\xff")]
    await notifier.handle_batch(records)  # type: ignore[arg-type]
    reasons = [orjson.loads(value)["reason"] for _, value in sent]
    assert reasons == ["undecodable", "schema_invalid", "undecodable"]
    assert outbox.pending_count("a") == 1
