"""Where the connectors' records go: Kafka (idempotent producer, batched by linger), or memory
for tests. Trades are keyed by Pulse symbol, gaps by `venue:symbol`, DLQ records by the feed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from aiokafka.producer.message_accumulator import BatchBuilder
from contracts.events import DeadLettered, FeedGap, TradeExecuted
from servicekit import metrics
from servicekit.kafka import encode_event, make_producer
from servicekit.partitioner import Murmur2Partitioner
from servicekit.settings import KafkaSettings

from market_feeds.records import TradeRecord

log = logging.getLogger(__name__)

SERVICE = "market_feeds"
MAX_BATCH_BYTES = 256 * 1024
_PARTITIONER = Murmur2Partitioner()  # the one make_producer gives the producer
_FEED, _EVENT_S = itemgetter(0), itemgetter(1)  # of a trade's tag: (feed, event time in s)


class Sink(Protocol):
    async def trades(self, feed: str, trades: Sequence[TradeRecord]) -> None: ...
    async def gap(self, gap: FeedGap) -> None: ...
    async def dead_letter(self, feed: str, value: bytes) -> None: ...


class KeyedBatcher:
    """Records for one topic, appended to a batch per partition and handed to the producer a
    batch at a time (`send_batch`) once full or `linger_ms` after it was opened.

    `producer.send` costs about as much per record as decoding a trade (metadata check,
    partitioner, accumulator lookup, a future per record); appending to an open batch is a
    fraction of that. The partition of a key is what the producer's partitioner would pick
    (servicekit's murmur2, Kafka's default), computed once per key. Batches are shipped one at
    a time (a lock), so per partition they reach Kafka in the order their records came, and
    the producer's idempotence (sequence numbers per batch) holds. `on_shipped(future, tags)`
    runs for each batch with the `tag` of each of its records, in order.
    """

    def __init__(
        self,
        producer: AIOKafkaProducer,
        topic: str,
        *,
        linger_ms: int,
        on_shipped: Callable[[asyncio.Future[Any], list[Any]], None] | None = None,
    ) -> None:
        self._producer = producer
        self.topic = topic
        self._linger_s = linger_ms / 1000
        self._on_shipped = on_shipped
        self._partition_of: dict[bytes, int] = {}
        self._open: dict[int, tuple[BatchBuilder, list[Any]]] = {}
        self._ship_lock = asyncio.Lock()
        self._opened = asyncio.Event()
        self._linger_task: asyncio.Task[None] | None = None
        self._error: KafkaError | None = None  # a batch the linger task could not hand over

    def start(self) -> None:
        self._linger_task = asyncio.create_task(self._linger())

    async def stop(self) -> None:
        if self._linger_task is not None:
            # Under the lock the linger task is not inside a hand-over, so cancelling it
            # cannot drop a batch half-way; what is still open is shipped below.
            async with self._ship_lock:
                self._linger_task.cancel()
            await asyncio.gather(self._linger_task, return_exceptions=True)
            self._linger_task = None
        await self.ship_all()

    def append_nowait(self, key: bytes, value: bytes, tag: Any = None) -> bool:
        """Append one record to the open batch of its key's partition if that needs no wait:
        the partition known, room in the batch, no hand-over failed since the last call. False
        otherwise, and then the caller awaits `add`. The usual case costs no coroutine."""
        partition = self._partition_of.get(key)
        if partition is None or self._error is not None:
            return False
        entry = self._open.get(partition)
        if entry is None:
            entry = self._open[partition] = (self._producer.create_batch(), [])
            self._opened.set()
        if entry[0].append(timestamp=None, key=key, value=value) is None:
            return False  # full: `add` ships it first
        entry[1].append(tag)
        return True

    async def add(self, key: bytes, value: bytes, tag: Any = None) -> None:
        """Append one record; ships the partition's batch first if it is full. Raises the
        KafkaError of a batch that could not be handed to the producer since the last call."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        partition = self._partition_of.get(key)
        if partition is None:
            partition = await self._partition(key)
        for _attempt in range(2):
            entry = self._open.get(partition)
            if entry is None:
                entry = self._open[partition] = (self._producer.create_batch(), [])
                self._opened.set()
            if entry[0].append(timestamp=None, key=key, value=value) is not None:
                entry[1].append(tag)
                return
            # Full: hand it over, then take whichever batch is open by then (several feeds
            # share the sink: another may have opened one while this one waited).
            await self._ship(partition)
        raise MessageSizeTooLargeError(f"a record of {len(value)} bytes fits no batch")

    async def ship_all(self) -> None:
        for partition in list(self._open):
            await self._ship(partition)

    async def _partition(self, key: bytes) -> int:
        partitions = sorted(await self._producer.partitions_for(self.topic))
        partition = _PARTITIONER(key, partitions, partitions)
        self._partition_of[key] = partition
        return partition

    async def _ship(self, partition: int) -> None:
        """Hand the partition's open batch to the producer. The batch is taken out under the
        lock, so a hand-over cancelled while waiting for it loses nothing."""
        async with self._ship_lock:
            entry = self._open.pop(partition, None)
            if entry is None or not entry[1]:
                return
            builder, tags = entry
            future = await self._producer.send_batch(builder, self.topic, partition=partition)
        if self._on_shipped is not None:
            self._on_shipped(future, tags)

    async def _linger(self) -> None:
        while True:
            await self._opened.wait()
            await asyncio.sleep(self._linger_s)
            self._opened.clear()
            try:
                await self.ship_all()
            except KafkaError as exc:  # raised to the next `add`: the connector redials
                log.error("Kafka would not take a batch of %s: %s", self.topic, exc)
                self._error = exc


class KafkaSink:
    """Trades go through a `KeyedBatcher` (batches per partition, not `send` per record); the
    publish lag is observed when Kafka acknowledges a batch (its oldest trade's). Gaps and DLQ
    records (rare) are sent one by one. `flush` hands over every open batch and waits for all."""

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        trades_topic: str,
        gaps_topic: str,
        dlq_topic: str,
        linger_ms: int = 5,
        client_id: str = SERVICE,
    ) -> None:
        self._producer: AIOKafkaProducer = make_producer(
            kafka, client_id=client_id, linger_ms=linger_ms, max_batch_size=MAX_BATCH_BYTES
        )
        self.trades_topic = trades_topic
        self.gaps_topic = gaps_topic
        self.dlq_topic = dlq_topic
        self._batcher = KeyedBatcher(
            self._producer, trades_topic, linger_ms=linger_ms, on_shipped=self._trades_shipped
        )
        self._metrics: dict[str, tuple[Any, Any, Any]] = {}  # feed → trades, events out, lag
        self.failures = 0

    async def start(self) -> None:
        await self._producer.start()
        self._batcher.start()

    async def stop(self) -> None:
        await self._batcher.stop()
        await self.flush()
        await self._producer.stop()

    async def flush(self) -> None:
        """Wait until Kafka has acknowledged (or finally refused) everything sent so far."""
        await self._batcher.ship_all()
        await self._producer.flush()

    async def trades(self, feed: str, trades: Sequence[TradeRecord]) -> None:
        append, add = self._batcher.append_nowait, self._batcher.add
        for trade in trades:
            tag = (feed, trade.event_time_s)
            if not append(trade.key, trade.value, tag):
                await add(trade.key, trade.value, tag)

    def _trades_shipped(self, future: asyncio.Future[Any], tags: list[tuple[str, float]]) -> None:
        # Metrics once per batch, not per trade (a counter's inc costs ~0.7 µs, a histogram's
        # observe ~1.5 µs: together more than decoding a trade): per feed in the batch, the
        # trades count now, and at the acknowledgement one lag observation, its oldest trade's.
        per_feed: dict[str, tuple[int, float]] = {}
        feeds = set(map(_FEED, tags))
        if len(feeds) == 1:  # the usual batch: one feed's trades, counted in C, not a loop
            per_feed[feeds.pop()] = (len(tags), min(map(_EVENT_S, tags)))
        else:
            for feed, event_s in tags:
                count, oldest_s = per_feed.get(feed, (0, event_s))
                per_feed[feed] = (count + 1, min(oldest_s, event_s))
        for feed, (count, _oldest_s) in per_feed.items():
            trades, events_out, _lag = self._metrics_of(feed)
            trades.inc(count)
            events_out.inc(count)
        future.add_done_callback(self._acked(per_feed))

    def _metrics_of(self, feed: str) -> tuple[Any, Any, Any]:
        found = self._metrics.get(feed)
        if found is None:
            found = self._metrics[feed] = (
                metrics.FEED_TRADES.labels(feed),
                metrics.EVENTS_OUT.labels(SERVICE, self.trades_topic),
                metrics.FEED_PUBLISH_LAG.labels(feed),
            )
        return found

    async def gap(self, gap: FeedGap) -> None:
        key = f"{gap.venue}:{gap.symbol}".encode()
        future = await self._producer.send(self.gaps_topic, encode_event(gap), key)
        future.add_done_callback(self._acked({}))
        metrics.EVENTS_OUT.labels(SERVICE, self.gaps_topic).inc()

    async def dead_letter(self, feed: str, value: bytes) -> None:
        """`value`: a `DeadLettered` record (servicekit.kafka.dead_letter); keyed by feed."""
        future = await self._producer.send(self.dlq_topic, value, feed.encode())
        future.add_done_callback(self._acked({}))

    def _acked(
        self, per_feed: dict[str, tuple[int, float]]
    ) -> Callable[[asyncio.Future[Any]], None]:
        """On a batch's acknowledgement: per feed, its oldest trade's exchange time → now."""

        def on_ack(future: asyncio.Future[Any]) -> None:
            if future.cancelled() or future.exception() is not None:
                self.failures += 1
                log.error("Kafka refused a record after its retries: %s", future.exception())
                return
            if per_feed:
                now = time.time()
                for feed, (_count, oldest_s) in per_feed.items():
                    self._metrics_of(feed)[2].observe(max(0.0, now - oldest_s))

        return on_ack


class MemorySink:
    """Keeps what was published, in order (tests)."""

    def __init__(self) -> None:
        self.published: list[TradeExecuted] = []
        self.gaps: list[FeedGap] = []
        self.dead: list[DeadLettered] = []
        self.arrived = asyncio.Event()

    async def trades(self, feed: str, trades: Sequence[TradeRecord]) -> None:
        # Read back through the contract model: what a consumer of the topic would get.
        self.published.extend(TradeExecuted.model_validate_json(t.value) for t in trades)
        metrics.FEED_TRADES.labels(feed).inc(len(trades))
        for trade in trades:
            metrics.FEED_PUBLISH_LAG.labels(feed).observe(
                max(0.0, time.time() - trade.event_time_s)
            )
        self.arrived.set()

    async def gap(self, gap: FeedGap) -> None:
        self.gaps.append(gap)
        self.arrived.set()

    async def dead_letter(self, feed: str, value: bytes) -> None:
        self.dead.append(DeadLettered.model_validate_json(value))
        self.arrived.set()
