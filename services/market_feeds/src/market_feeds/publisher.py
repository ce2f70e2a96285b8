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

from market_feeds.records import TradeRecord

log = logging.getLogger(__name__)

SERVICE = "market_feeds"


class Sink(Protocol):
    async def trades(self, feed: str, trades: Sequence[TradeRecord]) -> None: ...
    async def gap(self, gap: FeedGap) -> None: ...
    async def dead_letter(self, feed: str, value: bytes) -> None: ...


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
        self._counters: dict[str, tuple[Any, Any, Any]] = {}
        self.failures = 0

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self.flush()
        await self._producer.stop()

    async def flush(self) -> None:
        """Wait until Kafka has acknowledged (or finally refused) everything sent so far."""
        await self._producer.flush()

    async def trades(self, feed: str, trades: Sequence[TradeRecord]) -> None:
        counters = self._counters.get(feed)
        if counters is None:
            counters = self._counters[feed] = (
                metrics.FEED_PUBLISH_LAG.labels(feed),
                metrics.FEED_TRADES.labels(feed),
                metrics.EVENTS_OUT.labels(SERVICE, self.trades_topic),
            )
        lag, sent, events_out = counters
        send = self._producer.send
        topic = self.trades_topic
        future = None
        for trade in trades:
            future = await send(topic, trade.value, trade.symbol.encode())
        if future is not None:
            # One callback per frame, on its last trade: a frame's trades are sent together
            # and acknowledged in order per partition (saves a callback per trade).
            future.add_done_callback(self._acked(lag, [t.event_time_s for t in trades]))
        sent.inc(len(trades))
        events_out.inc(len(trades))

    async def gap(self, gap: FeedGap) -> None:
        key = f"{gap.venue}:{gap.symbol}".encode()
        future = await self._producer.send(self.gaps_topic, encode_event(gap), key)
        future.add_done_callback(self._acked(None, []))
        metrics.EVENTS_OUT.labels(SERVICE, self.gaps_topic).inc()

    async def dead_letter(self, feed: str, value: bytes) -> None:
        """`value`: a `DeadLettered` record (servicekit.kafka.dead_letter); keyed by feed."""
        future = await self._producer.send(self.dlq_topic, value, feed.encode())
        future.add_done_callback(self._acked(None, []))

    def _acked(self, lag: Any, event_times_s: list[float]) -> Any:
        def on_ack(future: asyncio.Future[Any]) -> None:
            if future.cancelled() or future.exception() is not None:
                self.failures += 1
                log.error("Kafka refused a record after its retries: %s", future.exception())
                return
            if lag is not None:
                now = time.time()
                for event_s in event_times_s:
                    lag.observe(max(0.0, now - event_s))

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
