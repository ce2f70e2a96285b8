"""The tuned Faust runtime: wired into the app, delivery order and offsets, upstream shape."""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from cdc_processor import runtime
from cdc_processor.app import create_app
from cdc_processor.settings import CdcSettings
from faust.sensors.monitor import Monitor
from faust.tables.recovery import Recovery
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


class _Stream:
    """A stream as the monitor sees it: weak-referenceable, owned by an agent (here itself)."""

    def __init__(self) -> None:
        self.task_owner = self


def _feed(monitor: Any, records: int) -> None:
    """The per-record hooks Faust calls for `records` records read, processed and sent."""
    tp, table, stream = TP("t", 0), SimpleNamespace(name="dedup"), _Stream()
    for offset in range(records):
        message = SimpleNamespace(time_in=None, time_out=None, time_total=None)
        monitor.on_message_in(tp, offset, message)
        state = monitor.on_stream_event_in(tp, offset, stream, object())
        monitor.on_stream_event_out(tp, offset, stream, object(), state)
        monitor.on_table_get(table, "k")
        monitor.on_table_set(table, "k", 1)
        monitor.on_send_initiated(object(), "out", object(), 1, 1)
        monitor.on_message_out(tp, offset, message)


def test_quiet_monitor_counts_nothing_per_record_where_fausts_monitor_does() -> None:
    loud, quiet = Monitor(), runtime.QuietMonitor()
    _feed(loud, 3)
    _feed(quiet, 3)
    # The same calls build Faust's per-record statistics (so the hooks above are the ones it
    # uses)...
    assert (loud.messages_received_total, loud.events_total, loud.messages_sent) == (3, 3, 3)
    assert loud.tables["dedup"].keys_updated == 3
    assert loud.tp_read_offsets == {TP("t", 0): 2}
    assert len(loud.events_runtime) == 3
    # ...and none of them in the quiet monitor.
    assert (quiet.messages_received_total, quiet.events_total, quiet.messages_sent) == (0, 0, 0)
    assert (quiet.tables, quiet.tp_read_offsets) == ({}, {})
    # Except the inbound time Faust's liveness check reads (one dict write per event).
    assert set(quiet.stream_inbound_time) == {TP("t", 0)}
    assert not quiet.events_runtime
    assert not quiet.messages_received_by_topic
    assert not quiet.messages_sent_by_topic


def test_quiet_monitor_keeps_the_bookkeeping_that_is_not_per_record() -> None:
    quiet = runtime.QuietMonitor()
    app = SimpleNamespace(rebalancing_count=4)
    quiet.on_rebalance_end(app, quiet.on_rebalance_start(app))
    quiet.on_commit_completed(object(), quiet.on_commit_initiated(object()))
    assert quiet.rebalances == 4
    assert len(quiet.rebalance_end_latency) == 1
    assert len(quiet.commit_latency) == 1


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


class _RecoveryEnd:
    """Just enough of Faust's `Recovery` (and its app) for `on_recovery_completed`, noting
    what it does to the consumer and the flow control, in order."""

    def __init__(self, calls: list[str]) -> None:
        stream_tp, changelog_tp = TP("reviews", 0), TP("app-dedup-changelog", 0)

        async def noted(name: str) -> None:
            calls.append(name)

        consumer = SimpleNamespace(
            assignment=lambda: {stream_tp, changelog_tp},
            resume_partitions=lambda tps: calls.append(f"resume_partitions {sorted(tps)}"),
            perform_seek=lambda: noted("perform_seek"),
            resume_flow=lambda: calls.append("consumer.resume_flow"),
        )
        self.app = SimpleNamespace(
            consumer=consumer,
            consumer_generation_id=0,
            on_rebalance_complete=SimpleNamespace(send=lambda: noted("rebalance_complete")),
            conf=SimpleNamespace(broker_request_timeout=5.0),
            flow_control=SimpleNamespace(resume=lambda: calls.append("flow_control.resume")),
            _fetcher=SimpleNamespace(maybe_start=lambda: noted("fetcher.maybe_start")),
            assignor=SimpleNamespace(assigned_standbys=lambda: set()),
            on_rebalance_end=lambda: calls.append("app.on_rebalance_end"),
        )
        self.tables = SimpleNamespace(
            values=lambda: [],
            on_actives_ready=lambda: None,
            on_standbys_ready=lambda: None,
        )
        self.log = SimpleNamespace(info=lambda *a: None, dev=lambda *a: None)
        self.completed = SimpleNamespace(set=lambda: calls.append("completed"))
        self._is_changelog_tp = lambda tp: tp.topic.endswith("-changelog")

    def _set_recovery_ended(self) -> None:
        pass

    async def _wait(self, coro: Any, timeout: float) -> None:  # noqa: ASYNC109  # Faust's signature
        await coro


async def test_fausts_recovery_end_seeks_then_resumes_flow_as_the_hold_expects() -> None:
    # ChunkedConsumer holds stream records from `perform_seek` until `resume_flow`, and
    # RewindingFlowControl notes what the flow control's resume drops in between: both answer
    # this sequence of Faust's recovery end. A Faust whose recovery does these in another
    # order, or resumes changelog partitions as streams, needs runtime.py looked at again.
    calls: list[str] = []
    await Recovery.on_recovery_completed(_RecoveryEnd(calls))  # type: ignore[arg-type]
    assert [c for c in calls if c != "completed"] == [
        "rebalance_complete",
        f"resume_partitions {[TP('reviews', 0)]}",
        "perform_seek",
        "flow_control.resume",
        "consumer.resume_flow",
        "fetcher.maybe_start",
        "app.on_rebalance_end",
    ]


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


def test_quiet_monitor_keeps_the_stream_inbound_time_faust_checks_liveness_with() -> None:
    """Without it, Faust's verify_event_path logged "Stream has not started processing" for
    every lagging partition while it was being processed (issue 25)."""
    import inspect

    from faust.transport.drivers import aiokafka as faust_aiokafka
    from faust.types import TP

    app = _app()
    tp = TP("reviews", 0)
    assert tp not in app.monitor.stream_inbound_time
    app.monitor.on_stream_event_in(tp, 5, None, None)
    assert tp in app.monitor.stream_inbound_time
    # What Faust reads (fails loudly if an upgrade moves the liveness check elsewhere).
    check = inspect.getsource(faust_aiokafka.AIOKafkaConsumerThread.verify_event_path)
    assert "monitor.stream_inbound_time.get(tp)" in check


@pytest.mark.parametrize(
    ("key", "value"),
    [(b"BTC-USD", b'{"price": "1"}'), (None, b"x"), (b"k", None), (b"k", b""), (None, None)],
)
async def test_raw_schema_decodes_as_faust_raw_serializers_do(
    key: bytes | None, value: bytes | None
) -> None:
    from faust import Schema
    from faust.types import Message

    app = _app()
    message = Message(
        "market.trades.v1", 1, 42, 1.0, 0, [("h", b"v")], key, value, None, tp=TP("t", 1)
    )
    upstream = await Schema(key_serializer="raw", value_serializer="raw").compile(app)(message)
    ours = await runtime.RawSchema().compile(app)(message)
    assert type(ours) is type(upstream)
    assert (ours.key, ours.value, ours.headers) == (upstream.key, upstream.value, upstream.headers)
    assert ours.message is upstream.message is message


def test_every_source_topic_decodes_with_the_raw_schema() -> None:
    app = _app()
    sources = [agent.channel for agent in app.agents.values()]
    assert sources and all(isinstance(c.schema, runtime.RawSchema) for c in sources)
    assert all(c.allow_empty for c in sources)  # tombstones reach the agents


def _changelog_event(tp: TP, offset: int, key: str, value: Any) -> Any:
    message = SimpleNamespace(tp=tp, partition=tp.partition, offset=offset, value=value)
    return SimpleNamespace(message=message, key=key, value=value)


async def test_batched_recovery_applies_a_queue_full_of_records_and_signals_the_end() -> None:
    app = _app()
    app.loop = asyncio.get_running_loop()
    recovery = app.tables.recovery
    assert isinstance(recovery, runtime.BatchedRecovery)
    table = app.tables["products"]
    tp = TP(table.changelog_topic.get_topic_name(), 0)
    recovery.active_tps = {tp}
    recovery.tp_to_table = {tp: table}
    recovery.active_highwaters = {tp: 2_499}  # offsets 0..2499: 2,500 records, 3 batches
    recovery.active_offsets = {tp: -1}
    recovery._set_recovery_started()
    queue = app.tables.changelog_queue
    for offset in range(2_500):
        # key k0..k99 written 25 times each: the last write wins, offset 2,480 deletes k80
        key, value = f"k{offset % 100}", None if offset == 2_480 else {"n": offset}
        queue.put_nowait(_changelog_event(tp, offset, key, value))
    queue.put_nowait(_changelog_event(tp, 7, "k7", {"n": -1}))  # seen already: ignored

    slurp = asyncio.create_task(runtime.BatchedRecovery._slurp_changelogs(recovery))
    try:
        await asyncio.wait_for(recovery.signal_recovery_end.wait(), timeout=10)
    finally:
        slurp.cancel()
    assert not recovery.in_recovery
    assert recovery.active_offsets[tp] == 2_499
    assert table.data["k99"] == {"n": 2_499}
    assert table.data["k7"] == {"n": 2_407}
    assert "k80" not in table.data
    assert len(table.data) == 99


def test_install_refuses_an_app_without_the_batched_recovery() -> None:
    import faust

    app = faust.App(f"cdc-runtime-{uuid.uuid4().hex[:8]}", broker="kafka://127.0.0.1:1")
    with pytest.raises(RuntimeError, match="TableManager=PulseTableManager"):
        runtime.install(app)
