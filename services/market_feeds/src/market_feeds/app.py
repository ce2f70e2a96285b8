"""Composition root: settings → one connector per enabled venue, the Kafka sink, /healthz and
/metrics. A feed that cannot connect keeps retrying (and fails /healthz, naming itself); the
other feeds go on.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence

from contracts import topics
from servicekit import metrics
from servicekit.clock import Clock, SystemClock
from servicekit.health import HealthServer
from servicekit.settings import KafkaSettings
from servicekit.topic_admin import ensure_topics

from market_feeds.connector import ConnectPolicy, FeedConnector, FeedStatus
from market_feeds.protocols import protocol_for
from market_feeds.publisher import SERVICE, KafkaSink, Sink
from market_feeds.settings import MarketFeedsSettings

log = logging.getLogger(__name__)


def build_connectors(
    settings: MarketFeedsSettings, *, sink: Sink, clock: Clock
) -> list[FeedConnector]:
    policy = ConnectPolicy(
        silence_timeout_s=settings.silence_timeout_s,
        ping_interval_s=settings.ping_interval_s,
        ping_timeout_s=settings.ping_timeout_s,
        open_timeout_s=settings.open_timeout_s,
        backoff_base_s=settings.backoff_base_s,
        backoff_max_s=settings.backoff_max_s,
        max_frame_bytes=settings.max_frame_bytes,
    )
    key_id = settings.alpaca_key_id.get_secret_value() if settings.alpaca_key_id else ""
    secret = settings.alpaca_secret_key.get_secret_value() if settings.alpaca_secret_key else ""
    return [
        FeedConnector(
            protocol_for(venue, alpaca_key_id=key_id, alpaca_secret_key=secret),
            url=settings.url(venue),
            symbols=settings.symbols(venue),
            sink=sink,
            clock=clock,
            policy=policy,
            dedup_capacity=settings.dedup_capacity,
        )
        for venue in settings.enabled
    ]


def feeds_check(
    statuses: Sequence[FeedStatus], *, clock: Clock, unhealthy_after_s: float, started_at: float
) -> Callable[[], Awaitable[tuple[bool, str]]]:
    """Liveness: every feed has had a frame within `unhealthy_after_s` (or the process is
    younger than that). The detail names each feed's state and last error."""

    async def check() -> tuple[bool, str]:
        now = clock.monotonic()
        ok = True
        parts = []
        for status in statuses:
            last = status.last_frame_at
            silent_s = now - (started_at if last is None else last)
            fresh = silent_s <= unhealthy_after_s
            ok = ok and fresh
            line = f"{status.feed}: {status.state}, last frame {silent_s:.1f} s ago"
            if last is None:
                line = f"{status.feed}: {status.state}, never received a frame"
            if status.last_error and status.state != "connected":
                line += f" ({status.last_error})"
            parts.append(line)
        return ok, "; ".join(parts)

    return check


def output_topics(settings: MarketFeedsSettings) -> tuple[topics.TopicSpec, ...]:
    """The topics this service writes, under the names configured (tests map their own)."""
    return tuple(
        topics.BY_NAME.get(name)
        or topics.TopicSpec(name, topics.PARTITIONS, topics.Producer.MARKET_FEEDS, "symbol")
        for name in (settings.trades_topic, settings.gaps_topic, settings.dlq_topic)
    )


async def main() -> None:
    settings = MarketFeedsSettings()
    kafka = KafkaSettings()
    clock = SystemClock()
    await ensure_topics(
        kafka,
        output_topics(settings),
        replication_factor=settings.topic_replication_factor,
    )
    sink = KafkaSink(
        kafka,
        trades_topic=settings.trades_topic,
        gaps_topic=settings.gaps_topic,
        dlq_topic=settings.dlq_topic,
        linger_ms=settings.producer_linger_ms,
    )
    await sink.start()
    connectors = build_connectors(settings, sink=sink, clock=clock)
    health = HealthServer(host=settings.http_host, port=settings.http_port)
    health.liveness["feeds"] = feeds_check(
        [c.status for c in connectors],
        clock=clock,
        unhealthy_after_s=settings.unhealthy_after_s,
        started_at=clock.monotonic(),
    )
    await health.start()
    metrics.SERVICE_INFO.labels(SERVICE).set(1)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(c.run(), name=f"feed-{c.feed}") for c in connectors]
    log.info("market_feeds running: %s", ", ".join(f"{c.feed} → {c.url}" for c in connectors))
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await sink.stop()  # 1. every sent record acknowledged 2. then the producer closes
        await health.stop()
        metrics.SERVICE_INFO.labels(SERVICE).set(0)
