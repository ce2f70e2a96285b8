"""Where the connectors' records go: Kafka (idempotent producer, batched by linger), or memory
for tests. Trades are keyed by Pulse symbol, gaps by `venue:symbol`, DLQ records by the feed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from contracts.events import DeadLettered, FeedGap, TradeExecuted
from servicekit import metrics
from servicekit.kafka import encode_event, make_producer
from servicekit.settings import KafkaSettings

log = logging.getLogger(__name__)

SERVICE = "market_feeds"


class Sink(Protocol):
    async def trades(self, feed: str, trades: Sequence[TradeExecuted]) -> None: ...
    async def gap(self, gap: FeedGap) -> None: ...
    async def dead_letter(self, feed: str, record: DeadLettered) -> None: ...


class KafkaSink:
    """Sends without waiting for each acknowledgement (the producer batches by linger); a
    trade's publish lag is observed when Kafka acknowledges it. `flush` waits for all."""

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
            kafka, client_id=client_id, linger_ms=linger_ms, max_batch_size=256 * 1024
        )
        self.trades_topic = trades_topic
        self.gaps_topic = gaps_topic
        self.dlq_topic = dlq_topic
        self._pending: set[asyncio.Future[Any]] = set()
        self._lag: dict[str, Any] = {}
        self._sent: dict[str, Any] = {}
        self.failures = 0

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self.flush()
        await self._producer.stop()

    async def flush(self) -> None:
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def trades(self, feed: str, trades: Sequence[TradeExecuted]) -> None:
        lag = self._lag.get(feed)
        if lag is None:
            lag = self._lag[feed] = metrics.FEED_PUBLISH_LAG.labels(feed)
            self._sent[feed] = metrics.FEED_TRADES.labels(feed)
        send = self._producer.send
        topic = self.trades_topic
        for trade in trades:
            future = await send(topic, encode_event(trade), trade.symbol.encode())
            event_s = trade.event_time.timestamp()
            self._track(future, lambda _f, t=event_s, h=lag: h.observe(max(0.0, time.time() - t)))
        self._sent[feed].inc(len(trades))
        metrics.EVENTS_OUT.labels(SERVICE, topic).inc(len(trades))

    async def gap(self, gap: FeedGap) -> None:
        key = f"{gap.venue}:{gap.symbol}".encode()
        self._track(await self._producer.send(self.gaps_topic, encode_event(gap), key), None)
        metrics.EVENTS_OUT.labels(SERVICE, self.gaps_topic).inc()

    async def dead_letter(self, feed: str, record: DeadLettered) -> None:
        future = await self._producer.send(self.dlq_topic, encode_event(record), feed.encode())
        self._track(future, None)

    def _track(self, future: asyncio.Future[Any], on_ack: Any) -> None:
        self._pending.add(future)
        future.add_done_callback(self._done)
        if on_ack is not None:
            future.add_done_callback(on_ack)

    def _done(self, future: asyncio.Future[Any]) -> None:
        self._pending.discard(future)
        if future.cancelled() or future.exception() is not None:
            self.failures += 1
            log.error("Kafka refused a record: %s", future.exception())


class MemorySink:
    """Keeps what was published, in order (tests)."""

    def __init__(self) -> None:
        self.published: list[TradeExecuted] = []
        self.gaps: list[FeedGap] = []
        self.dead: list[DeadLettered] = []
        self.arrived = asyncio.Event()

    async def trades(self, feed: str, trades: Sequence[TradeExecuted]) -> None:
        self.published.extend(trades)
        metrics.FEED_TRADES.labels(feed).inc(len(trades))
        for trade in trades:
            metrics.FEED_PUBLISH_LAG.labels(feed).observe(
                max(0.0, time.time() - trade.event_time.timestamp())
            )
        self.arrived.set()

    async def gap(self, gap: FeedGap) -> None:
        self.gaps.append(gap)
        self.arrived.set()

    async def dead_letter(self, feed: str, record: DeadLettered) -> None:
        self.dead.append(record)
        self.arrived.set()
