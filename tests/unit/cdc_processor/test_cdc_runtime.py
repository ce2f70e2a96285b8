"""The tuned Faust runtime: wired into the app, delivery order and offsets, upstream shape."""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from cdc_processor import runtime
from cdc_processor.app import create_app
from cdc_processor.settings import CdcSettings
from faust.tables.recovery import Recovery
from faust.transport import consumer as faust_consumer
from faust.types import TP
from mode.utils.queues import FlowControlQueue
from servicekit.settings import KafkaSettings


def _app(**overrides: Any) -> Any:
    settings = CdcSettings(app_id=f"cdc-runtime-{uuid.uuid4().hex[:8]}", http_port=0, **overrides)
    return create_app(settings, KafkaSettings(kafka_bootstrap_servers="127.0.0.1:1")).app


def test_app_uses_the_quiet_monitor_the_chunked_consumer_and_the_buffer_setting() -> None:
    app = _app(stream_buffer_maxsize=12_345)
    assert isinstance(app.monitor, runtime.QuietMonitor)
    assert isinstance(app.transport, runtime.PulseTransport)
    assert app.transport.Consumer is runtime.ChunkedConsumer
    assert app.conf.stream_buffer_maxsize == 12_345


async def test_fetch_batching_settings_reach_the_kafka_consumer() -> None:
    app = _app(fetch_min_bytes=65_536, fetch_max_wait_ms=20)
    app.loop = asyncio.get_running_loop()
    thread = app.consumer._new_consumer_thread()
    assert isinstance(thread, runtime.FetchTunedConsumerThread)
    kafka_consumer = thread._create_worker_consumer(app.transport)
    # aiokafka builds its fetcher from these when the consumer starts
    assert (kafka_consumer._fetch_min_bytes, kafka_consumer._fetch_max_wait_ms) == (65_536, 20)
    await kafka_consumer.stop()


def test_quiet_monitor_keeps_no_per_record_state() -> None:
    app = _app()
    monitor = app.monitor
    for _ in range(3):
        assert monitor.on_message_in("tp", 1, object()) is None
        assert monitor.on_stream_event_in("tp", 1, object(), object()) is None
    assert monitor.messages_received_total == 0
    assert monitor.events_total == 0


class _Recorder:
    """Just enough of a consumer for `ChunkedConsumer._deliver`."""

    def __init__(self, *, commit_every: int | None = None) -> None:
        self.delivered: list[int] = []
        self._read_offset: dict[TP, int] = {}
        self._commit_every = commit_every
        self._n_acked = 0
        self.commits = 0
        self.block_at: int | None = None
        self.hold_at: int | None = None  # a seek starts once this offset is delivered
        self._holding = False
        self._in_callback = False
        self._seek_waiter = None
        self._held: dict[TP, int] = {}
        self.app = SimpleNamespace(tables=SimpleNamespace(changelog_topics={"app-t-changelog"}))

    async def callback(self, message: Any) -> None:
        if message.offset == self.block_at:
            await asyncio.Event().wait()  # a full stream buffer: never returns
        self.delivered.append(message.offset)
        self._n_acked += 1
        if message.offset == self.hold_at:
            self._holding = True

    async def commit(self) -> None:
        self.commits += 1


T0, T1 = TP("t", 0), TP("t", 1)


class _Message:
    def __init__(self, offset: int) -> None:
        self.offset = offset


async def test_deliver_keeps_order_and_moves_the_read_offset_after_each_record() -> None:
    consumer = _Recorder(commit_every=4)
    chunk = [(T0, _Message(o)) for o in range(10)]
    await runtime.ChunkedConsumer._deliver(consumer, chunk)  # type: ignore[arg-type]
    assert consumer.delivered == list(range(10))
    assert consumer._read_offset == {T0: 9}
    assert consumer.commits == 2  # broker_commit_every still counts acked records


async def test_a_cancelled_chunk_leaves_the_read_offset_at_the_last_delivered_record() -> None:
    # A rebalance (flow suspended) cancels the delivery task, as it cancelled the one-record
    # task before: records after the blocked one are not marked read, so they are refetched.
    consumer = _Recorder()
    consumer.block_at = 3
    chunk = [(T0, _Message(o)) for o in range(6)]
    task = asyncio.ensure_future(runtime.ChunkedConsumer._deliver(consumer, chunk))  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert consumer.delivered == [0, 1, 2]
    assert consumer._read_offset == {T0: 2}
    assert not consumer._in_callback  # a seek would not wait for it


async def test_from_a_seek_stream_records_are_held_and_noted_changelogs_still_flow() -> None:
    # A seek starts after offset 1 of t-0 (rebalance end): from then on stream records are
    # held until flow resumes, a held partition stays held for the rest of the chunk, and the
    # first held offset of each partition is what gets fetched again.
    consumer = _Recorder()
    consumer.hold_at = 1
    changelog = TP("app-t-changelog", 0)
    chunk = [
        (T0, _Message(0)),
        (T0, _Message(1)),
        (T1, _Message(50)),
        (changelog, _Message(7)),
        (T0, _Message(2)),
        (T1, _Message(51)),
    ]
    await runtime.ChunkedConsumer._deliver(consumer, chunk)  # type: ignore[arg-type]
    assert consumer.delivered == [0, 1, 7]
    assert consumer._held == {T1: 50, T0: 2}
    assert consumer._read_offset == {T0: 1, changelog: 7}

    consumer._holding = False  # flow resumed; until the rewind, held partitions stay held
    await runtime.ChunkedConsumer._deliver(consumer, [(T0, _Message(3))])  # type: ignore[arg-type]
    assert consumer.delivered == [0, 1, 7]


def _queued(tp: str, offset: int) -> Any:
    return SimpleNamespace(message=SimpleNamespace(tp=tp, offset=offset))


async def test_a_queue_clear_notes_the_first_dropped_offset_of_each_partition() -> None:
    flow = runtime.RewindingFlowControl()
    queues = [FlowControlQueue(maxsize=100, flow_control=flow, clear_on_resume=True) for _ in "ab"]
    for offset in (7, 5, 9):
        queues[0].put_nowait(_queued("quotes-1", offset))
    queues[1].put_nowait(_queued("quotes-2", 40))
    queues[1].put_nowait(object())  # not a Kafka event: nothing to fetch again
    flow.resume()  # what Faust calls after a rebalance: it empties every stream queue
    assert [q.qsize() for q in queues] == [0, 0]
    assert flow.take_dropped() == {"quotes-1": 5, "quotes-2": 40}
    assert flow.dropped == {}
    queues[0].put_nowait(_queued("quotes-1", 12))
    flow.clear()
    flow.clear()  # an empty clear keeps what the one before noted
    assert flow.take_dropped() == {"quotes-1": 12}


def test_install_replaces_the_flow_control_only_before_streams_exist() -> None:
    app = _app()
    assert isinstance(app.flow_control, runtime.RewindingFlowControl)
    with pytest.raises(RuntimeError, match="before the app's streams"):
        runtime.install(app)


# The overrides copy faust-streaming 0.15's code: a Faust upgrade that changes it must be
# looked at before runtime.py is trusted again.
UPSTREAM_SHAPES: dict[str, tuple[Callable[[], Any], tuple[str, ...]]] = {
    # ChunkedConsumer._drain_messages mirrors the fetch loop.
    "fetch loop": (
        lambda: faust_consumer.Consumer._drain_messages,
        (
            "getmany(timeout=1.0)",
            "self.wait_first(",
            "callback(message), self.suspend_flow.wait()",
            "await self._add_gap(tp, r_offset + 1, offset)",
            "self._n_acked >= commit_every",
            "set_read_offset(tp, offset)",
        ),
    ),
    # take_batches mirrors Stream.take_events (its passive buffer, acks after the batch, the
    # stream held while a batch is consumed) and adds the quiet rule.
    "take": (
        lambda: faust.Stream.take_events,
        (
            "self.enable_acks = False",
            "self.add_processor(add_to_buffer)",
            "self._enable_passive(cast(ChannelT, channel_it))",
            "event = self.current_event",
            "await self.wait(buffer_consumed)",
            "buffer_consuming = self.loop.create_future()",
            "await self.ack(event)",
            "self._processors.remove(add_to_buffer)",
        ),
    ),
    # The hold and rewind answer this sequence: stream partitions resumed, sought to their
    # committed offsets, then every stream queue emptied by the flow resume.
    "recovery end": (
        lambda: Recovery.on_recovery_completed,
        (
            "consumer.resume_partitions(",
            "consumer.perform_seek()",
            "self.app.flow_control.resume()",
            "consumer.resume_flow()",
        ),
    ),
}


@pytest.mark.parametrize("name", sorted(UPSTREAM_SHAPES))
def test_upstream_code_still_has_the_shape_the_override_mirrors(name: str) -> None:
    upstream, needles = UPSTREAM_SHAPES[name]
    source = inspect.getsource(upstream())
    for needle in needles:
        assert needle in source, needle


def test_event_loop_defaults_to_asyncio_and_rejects_unknown_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cdc_processor.__main__ import use_event_loop
    from pydantic import ValidationError

    assert CdcSettings().event_loop == "asyncio"
    policy = asyncio.get_event_loop_policy()
    assert use_event_loop("asyncio") == "asyncio"
    assert asyncio.get_event_loop_policy() is policy  # asyncio: the policy is left alone
    monkeypatch.setenv("CDC_EVENT_LOOP", "trio")
    with pytest.raises(ValidationError, match="event_loop"):
        CdcSettings()
