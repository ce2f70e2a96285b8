"""Kafka adapter: rebuild the recent past of each topic, then tail it; decode → state → hub.

No consumer group: every dashboard process reads every partition of its four topics. On start
(and for a partition that appears later) each partition is positioned at the first offset whose
timestamp is within `lookback_s` (`offsets_for_times`), or at its end when it has nothing that
recent. A record that does not decode into its topic's contract event is counted in
`pulse_dashboard_malformed_records_total{topic}` and skipped; the feed goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from contracts.events import AlertRaised, CandleClosed, CandleForming, ReviewEnriched
from pydantic import BaseModel, ValidationError
from servicekit import metrics
from servicekit.clock import Clock
from servicekit.settings import KafkaSettings

from dashboard.views import Change, DashboardState

log = logging.getLogger(__name__)

SERVICE = "dashboard"
MODELS: dict[str, type[BaseModel]] = {
    "candles": CandleClosed,
    "live": CandleForming,
    "alerts": AlertRaised,
    "reviews": ReviewEnriched,
}


class MalformedError(Exception):
    pass


def decode(kind: str, value: bytes | None) -> Any:
    """The record's contract event; raises MalformedError with the reason."""
    if value is None:
        raise MalformedError("tombstone")
    try:
        # pydantic parses the JSON itself (in Rust): no intermediate dict
        return MODELS[kind].model_validate_json(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        reason = "not JSON" if first["type"] == "json_invalid" else f"not a {MODELS[kind].__name__}"
        raise MalformedError(
            f"{reason}: {exc.error_count()} errors, first {first['msg']}"
        ) from None


def apply(state: DashboardState, kind: str, event: Any, *, now_s: float) -> list[Change]:
    if kind == "candles":
        return state.on_candle(event, now_s=now_s)
    if kind == "live":
        return state.on_forming(event, now_s=now_s)
    if kind == "alerts":
        return state.on_alert(event, now_s=now_s)
    return state.on_review(event, now_s=now_s)


class KafkaFeed:
    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        topics: Mapping[str, str],  # feed kind → topic name
        state: DashboardState,
        publish: Callable[[list[Change]], None],
        clock: Clock,
        lookback_s: float,
    ) -> None:
        self.kafka = kafka
        self.kinds = {name: kind for kind, name in topics.items()}
        self.state = state
        self.publish = publish
        self.clock = clock
        self.lookback_s = lookback_s
        self.consumer: AIOKafkaConsumer | None = None
        self.admin: AIOKafkaAdminClient | None = None
        self.caught_up = asyncio.Event()  # the recent past is replayed (readiness)
        self._replay_ends: dict[TopicPartition, int] = {}
        self.records = 0
        self._in: dict[str, Any] = {}

    async def start(self) -> None:
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.kafka.kafka_bootstrap_servers,
            client_id=f"{self.kafka.kafka_client_id_prefix}-dashboard",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            isolation_level="read_committed",
            fetch_max_wait_ms=50,  # a lone record waits at most this long in the broker
        )
        await self.consumer.start()
        self.admin = AIOKafkaAdminClient(
            bootstrap_servers=self.kafka.kafka_bootstrap_servers,
            client_id=f"{self.kafka.kafka_client_id_prefix}-dashboard-admin",
        )
        await self.admin.start()

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
        if self.admin is not None:
            await self.admin.close()

    async def partitions(self, *, known: set[str]) -> set[TopicPartition]:
        """The partitions of those of our topics that exist. Only existing topics are
        described: a metadata request naming a missing topic creates it on a broker with
        auto.create.topics.enable (the local stack's). Listing every topic is only done while
        one of ours is missing: on a broker with thousands of topics it costs a large
        metadata response (measured: stalls of a few hundred ms in the stream's p99)."""
        assert self.admin is not None
        ours = set(self.kinds)
        existing = known if known >= ours else set(await self.admin.list_topics()) & ours
        if not existing:
            return set()
        described = await self.admin.describe_topics(sorted(existing))
        return {
            TopicPartition(topic["topic"], partition["partition"])
            for topic in described
            if topic["error_code"] == 0
            for partition in topic["partitions"]
        }

    async def _assign_new(self) -> None:
        """Assign any partition not yet read (topics may appear after start) at lookback."""
        consumer = self.consumer
        assert consumer is not None
        current = set(consumer.assignment())
        wanted = current | await self.partitions(known={tp.topic for tp in current})
        new = wanted - current
        if not new:
            return
        positions = {tp: await consumer.position(tp) for tp in current}
        consumer.assign(sorted(wanted))
        for tp, offset in positions.items():
            consumer.seek(tp, offset)
        since_ms = int((self.clock.now().timestamp() - self.lookback_s) * 1000)
        found = await consumer.offsets_for_times({tp: since_ms for tp in new})
        ends = await consumer.end_offsets(list(new))
        for tp in new:
            at = found.get(tp)
            consumer.seek(tp, at.offset if at is not None else ends[tp])
            if at is not None and at.offset < ends[tp]:
                self._replay_ends[tp] = ends[tp]
        log.info("reading %d new partitions from %.0f s back", len(new), self.lookback_s)

    async def _check_caught_up(self) -> None:
        # Positions, not record offsets: a transaction marker may be a partition's last offset.
        assert self.consumer is not None
        for tp, end in list(self._replay_ends.items()):
            if await self.consumer.position(tp) >= end:
                del self._replay_ends[tp]

    def _assign_interval_s(self) -> float:
        """10 s while one of our topics has no partition yet, then 5 min (new partitions)."""
        assert self.consumer is not None
        assigned = {tp.topic for tp in self.consumer.assignment()}
        return 300.0 if assigned >= set(self.kinds) else 10.0

    async def run(self) -> None:
        """Tail the topics for ever (the caller cancels), looking for topics that appear."""
        assert self.consumer is not None
        await self._assign_new()
        next_assign = self.clock.monotonic() + self._assign_interval_s()
        while True:
            if not self._replay_ends and not self.caught_up.is_set():
                self.caught_up.set()
                log.info("recent state rebuilt (%d records)", self.records)
            if self.clock.monotonic() >= next_assign:
                await self._assign_new()
                next_assign = self.clock.monotonic() + self._assign_interval_s()
            if not self.consumer.assignment():
                await asyncio.sleep(1.0)
                continue
            batches = await self.consumer.getmany(timeout_ms=200, max_records=2000)
            for tp, records in batches.items():
                self.handle(tp.topic, records)
            if self._replay_ends:
                await self._check_caught_up()

    def handle(self, topic: str, records: list[Any]) -> None:
        """Decode each record and apply it; malformed ones are counted and skipped."""
        kind = self.kinds[topic]
        now_s = self.clock.monotonic()
        changes: list[Change] = []
        for record in records:
            try:
                event = decode(kind, record.value)
            except MalformedError as exc:
                self.state.malformed[topic] = self.state.malformed.get(topic, 0) + 1
                metrics.DASHBOARD_MALFORMED.labels(topic).inc()
                log.warning(
                    "skipping malformed record %s[%d]@%d: %s",
                    topic,
                    record.partition,
                    record.offset,
                    exc,
                )
                continue
            changes += apply(self.state, kind, event, now_s=now_s)
        self.records += len(records)
        counter = self._in.get(topic)
        if counter is None:
            counter = self._in[topic] = metrics.EVENTS_IN.labels(SERVICE, topic)
        counter.inc(len(records))
        self.publish(changes)
