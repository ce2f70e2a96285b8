"""Faust agents, thin: decode → call the pure flow → emit. One agent per source topic, each
with concurrency 1 (more can commit past an unfinished message; faust issue #606).

Every record is either emitted from, skipped (a tombstone, a redelivery) or dead-lettered
with its original bytes, reason and topic/partition/offset; processing always goes on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
from contracts import topics
from servicekit import metrics, tracing
from servicekit.health import HealthServer
from servicekit.kafka import dead_letter
from servicekit.partitioner import murmur2

from cdc_processor import decoding, pipeline, runtime
from cdc_processor.app import SERVICE, Processor
from cdc_processor.enrichment import ProductInfo
from cdc_processor.pipeline import Output, Rejected
from cdc_processor.writeback import ChangelogRecord

log = logging.getLogger(__name__)

Handler = Callable[[Any], tuple[list[Output], Rejected | None]]

# (topic, partition) → next offset to process; lag = high watermark - this.
POSITIONS: dict[tuple[str, int], int] = {}

# A source route → the internal route its records are repartitioned through.
REPARTITIONED_BY = {
    "products": "products-by-product",
    "reviews-cdc": "reviews-by-product",
    "reviews-crawled": "reviews-by-product",
}

CDC_TOPICS = frozenset(
    spec.name for spec in (topics.PRODUCTS_CDC, topics.REVIEWS_CDC, topics.MARKET_TICKS_CDC)
)


def observe_change(message: Any) -> None:
    """The commit time of a batch's newest change event, and how long it took from the commit
    to Kafka (the replication slot's and Debezium's lag, in time), for the alert rules. Once
    per batch: one parse of one record, whatever the batch's size."""
    try:
        source_ts_ms = orjson.loads(message.value)["source"]["ts_ms"]
    except (ValueError, TypeError, KeyError):
        return  # a tombstone or an undecodable record (dead-lettered by the handler)
    if not isinstance(source_ts_ms, int):
        return
    committed_s = source_ts_ms / 1000
    metrics.CDC_LAST_CHANGE.labels(message.topic).set(committed_s)
    if message.timestamp:
        lag_s = max(0.0, message.timestamp - committed_s)
        metrics.CDC_REPLICATION_LAG.labels(message.topic).set(lag_s)


async def process_batch(
    processor: Processor,
    events: Sequence[Any],
    handle: Handler,
    stream: Any = None,
    after: Callable[[], object] | None = None,
) -> None:
    """Process a batch of Kafka events: handle each (dead-lettering rejections), write every
    changed table key once (its store, and one changelog record), then send the outputs and,
    once Kafka has them, the changelog records (see `publish`). Runs synchronously up to the
    sends, so another agent's batch never interleaves with this one's table writes; Faust
    flushes the producer before it commits the batch's offsets (at-least-once)."""
    outputs: list[Output] = []
    tables = processor.tables
    set_event = None if stream is None else stream._set_current_event
    counts_in: dict[str, int] = {}
    latencies: dict[str, Any] = {}  # topic → its latency histogram child
    last: Any = None
    for event in events:
        message = event.message
        last = message
        counts_in[message.topic] = counts_in.get(message.topic, 0) + 1
        for table in tables:
            table.current_event = event
        try:
            produced, rejected = handle(message)
        except decoding.DecodeError as exc:
            produced, rejected = [], Rejected(exc.reason, exc.detail)
        outputs.extend(produced)
        if rejected is not None:
            outputs.append(_dead_letter(processor, message, rejected))
        if message.timestamp:
            latency = latencies.get(message.topic)
            if latency is None:
                latency = latencies[message.topic] = metrics.PROCESSING_LATENCY.labels(
                    SERVICE, message.topic
                )
            latency.observe(max(0.0, time.time() - message.timestamp))
        POSITIONS[(message.topic, message.partition)] = message.offset + 1
    if after is not None:
        after()  # housekeeping writes, under the batch's last event
    changelog: list[ChangelogRecord] = []
    for table in tables:
        if table.pending:
            changelog += table.changelog_records()
        table.current_event = None
    if set_event is not None and last is not None:
        set_event(events[-1])
    if last is not None and last.topic in CDC_TOPICS:
        observe_change(last)
    for topic, n in counts_in.items():
        metrics.EVENTS_IN.labels(SERVICE, topic).inc(n)
    await publish(processor, outputs, changelog)


def _dead_letter(processor: Processor, message: Any, rejected: Rejected) -> Output:
    log.warning(
        "dead-lettering %s[%d]@%d: %s",
        message.topic,
        message.partition,
        message.offset,
        rejected.reason,
    )
    metrics.DLQ_RECORDS.labels(SERVICE, rejected.reason).inc()
    key, value = dead_letter(
        message,
        service=SERVICE,
        reason=rejected.reason,
        detail=rejected.detail,
        now=processor.clock.now(),
    )
    return Output(topics.DLQ.name, key, value)


async def publish(
    processor: Processor,
    outputs: Sequence[Output],
    changelog: Sequence[ChangelogRecord] = (),
) -> None:
    """Send the batch's outputs, wait until Kafka has them, then send its table changelog
    records (no per-record Topic/FutureMessage wrapping; Faust flushes the producer before it
    commits offsets).

    In this order a crash loses nothing. Dying after the outputs but before the changelog, the
    restarted worker restores the older state and replays the batch (its offsets are not
    committed yet), sending the same records again: at-least-once. The other way round, the
    restored state would already count the batch's inputs (a candle closed, a tick's position
    recorded) while the outputs built from them never reached Kafka, and the replay, seeing
    its inputs as done, would not send them again: a kill -9 lost candles that way."""
    send = processor.app.producer.send
    names = processor.topic_names
    counts_out: dict[str, int] = {}
    delivered = []
    for out in outputs:
        delivered.append(
            await send(names.get(out.topic, out.topic), out.key, out.value, None, None, out.headers)
        )
        counts_out[out.topic] = counts_out.get(out.topic, 0) + 1
    if changelog and delivered:
        await asyncio.gather(*delivered)  # raises if Kafka refused one: no state is written
    for record in changelog:
        await send(record.topic, record.key, record.value, record.partition, None, None)
    for topic, n in counts_out.items():
        metrics.EVENTS_OUT.labels(SERVICE, topic).inc(n)


def partition_of(key: bytes) -> int:
    """The partition the app's producer (Murmur2Partitioner) sends `key` to on a topic of
    `topics.PARTITIONS` partitions (the repartition topics)."""
    return (murmur2(key) & 0x7FFFFFFF) % topics.PARTITIONS


def register(p: Processor, *, sources: Mapping[str, str] | None = None) -> None:
    """Attach the agents, timers and health server to `p.app`.

    `sources` (route name → topic) replaces the contract topics and keeps only the routes it
    names: the benchmark runs the same agents on its own topics.
    """
    app = p.app
    for internal in (p.ticks_by_symbol, p.reviews_by_product, p.products_by_product):
        p.topics[internal.get_topic_name()] = internal
    p.topic_names.update({name: topic.get_topic_name() for name, topic in p.topics.items()})

    reviews_topic = p.reviews_by_product.get_topic_name()
    products_topic = p.products_by_product.get_topic_name()

    def product(message: Any) -> tuple[list[Output], Rejected | None]:
        # Repartition: the change goes to the partition of its id and to that of its SKU.
        change = decoding.decode_product(message.value)
        if change is None:
            return [], None
        keys = pipeline.product_route_keys(change)
        return [Output(products_topic, key.encode(), message.value) for key in keys], None

    def routed_product(message: Any) -> tuple[list[Output], Rejected | None]:
        change = decoding.decode_product(message.value)
        if change is None:
            return [], None
        return p.reviews.on_product(change, only=message.key.decode()), None

    def route_review(kind: decoding.ReviewKind, review: Any, raw: bytes) -> list[Output]:
        key = pipeline.review_route_key(review).encode()
        return [Output(reviews_topic, key, decoding.routed_review(kind, raw))]

    def review_cdc(message: Any) -> tuple[list[Output], Rejected | None]:
        review = decoding.decode_review_cdc(message.value)
        return ([] if review is None else route_review("cdc", review, message.value)), None

    def review_crawled(message: Any) -> tuple[list[Output], Rejected | None]:
        review = decoding.decode_review_crawled(message.value)
        return ([] if review is None else route_review("crawled", review, message.value)), None

    def routed_review(message: Any) -> tuple[list[Output], Rejected | None]:
        # In its product id's partition an app review finds its product, if known, and moves
        # on to its SKU's partition, where the crawled reviews of the product are: dedup
        # claims across the two sources (keyed by SKU) meet there. Unknown, it is handled
        # here and held as an orphan under its id until the product comes.
        # The key says where it is (`id:…` or `sku:…`): a review to move on is not decoded.
        key = message.key.decode() if message.key else ""
        known = p.reviews.product_under(key) if key.startswith("id:") else None
        if known is not None:
            target = f"sku:{known.sku}".encode()
            if partition_of(target) != message.partition:
                value = decoding.with_routed_product(message.value, orjson.dumps(known.to_json()))
                return [Output(reviews_topic, target, value)], None
        decoded = decoding.decode_routed_review(message.value)
        if decoded is None:
            return [], None
        review, product_json = decoded
        if product_json:
            known = ProductInfo.from_json(orjson.loads(product_json))
        return p.reviews.on_review(review, product=known), None

    def repartition(message: Any, tick: decoding.Tick) -> Output:
        # Keyed by symbol; the source position travels along for redelivery checks.
        source = (message.topic, message.partition, message.offset)
        value = decoding.tick_to_json(tick, source=source)
        return Output(p.ticks_by_symbol.get_topic_name(), tick.symbol.encode(), value)

    def tick_cdc(message: Any) -> tuple[list[Output], Rejected | None]:
        tick = decoding.decode_tick_cdc(message.value)
        if tick is None:
            return [], None
        return [repartition(message, tick)], None

    def quote(message: Any) -> tuple[list[Output], Rejected | None]:
        tick = decoding.decode_quote(message.value)
        if tick is None:
            return [], None
        return p.ticks.on_tick(tick, position=(message.topic, message.partition, message.offset))

    def trade(message: Any) -> tuple[list[Output], Rejected | None]:
        # Keyed by symbol already (market_feeds): straight into the one candle path.
        tick = decoding.decode_trade(message.value)
        if tick is None:
            return [], None
        return p.ticks.on_tick(tick, position=(message.topic, message.partition, message.offset))

    def repartitioned_tick(message: Any) -> tuple[list[Output], Rejected | None]:
        decoded = decoding.tick_from_json(message.value)
        if decoded is None:
            return [], None
        tick, source = decoded
        return p.ticks.on_tick(tick, position=source)

    routes: dict[str, tuple[str, Handler]] = {
        "products": (topics.PRODUCTS_CDC.name, product),
        "reviews-cdc": (topics.REVIEWS_CDC.name, review_cdc),
        "reviews-crawled": (topics.REVIEWS_CRAWLED.name, review_crawled),
        "ticks-cdc": (topics.MARKET_TICKS_CDC.name, tick_cdc),
        "quotes": (topics.MARKET_QUOTES.name, quote),
        "trades": (topics.MARKET_TRADES.name, trade),
        "ticks-by-symbol": (p.ticks_by_symbol.get_topic_name(), repartitioned_tick),
        "products-by-product": (products_topic, routed_product),
        "reviews-by-product": (reviews_topic, routed_review),
    }
    if tracing.ENABLED:
        # Chosen once here: with tracing off the agents run the plain handlers above. The
        # review and CDC tick paths continue the trace of the API request that wrote the row
        # (its `trace_parent` column, through Debezium), the repartitioned tick the trace in
        # its `traceparent` header; what they emit carries their span's traceparent.
        traced: dict[str, Handler] = {
            "reviews-cdc": _traced(
                "reviews-cdc",
                lambda m: decoding.decode_review_cdc(m.value),
                lambda m, review: review.trace_parent,
                lambda m, review: (route_review("cdc", review, m.value), None),
            ),
            # Only records a traced hop sent carry a traceparent (crawled reviews do not).
            "reviews-by-product": _traced_if_parent(
                "reviews-by-product", routed_review, parent_of=lambda m: m.headers
            ),
            "ticks-cdc": _traced(
                "ticks-cdc",
                lambda m: decoding.decode_tick_cdc(m.value),
                lambda m, tick: tick.trace_parent,
                lambda m, tick: ([repartition(m, tick)], None),
            ),
            "ticks-by-symbol": _traced(
                "ticks-by-symbol",
                lambda m: decoding.tick_from_json(m.value),
                lambda m, decoded: tracing.header_traceparent(m.headers),
                lambda m, decoded: p.ticks.on_tick(decoded[0], position=decoded[1]),
            ),
        }
        for name, handle in traced.items():
            routes[name] = (routes[name][0], handle)
    p.handlers.update({name: handle for name, (_topic, handle) in routes.items()})
    if sources is not None:
        unknown = set(sources) - set(routes)
        if unknown:
            raise ValueError(f"unknown routes: {sorted(unknown)}")
        # The repartition routes a kept source route feeds stay, on their internal topics.
        kept = dict(sources)
        for name in sources:
            feeds = REPARTITIONED_BY.get(name)
            if feeds is not None and feeds not in kept:
                kept[feeds] = routes[feeds][0]
        routes = {name: (kept[name], routes[name][1]) for name in kept}

    def sweep_dedup() -> int:
        return p.reviews.sweep_dedup(limit=p.settings.dedup_sweep_per_batch)

    housekeeping = {"reviews-by-product": sweep_dedup}

    async def claims_moved(sender: Any, *_args: Any, signal: Any, **_kwargs: Any) -> None:
        # Dedup claims of new partitions are recovered before streams resume; rebuild the
        # sweep's order from the table then, or they would never expire here.
        p.reviews.forget_claim_order()

    app.on_partitions_assigned.connect(claims_moved)  # type: ignore[arg-type]  # mode wants a positional-only sender

    for name, (topic_name, handle) in routes.items():
        channel = p.topics.get(topic_name) or p.app.topic(
            topic_name, schema=runtime.RawSchema(), allow_empty=True
        )
        agent = _make_agent(p, handle, housekeeping.get(name))
        app.agent(channel, name=name, concurrency=1)(agent)

    @app.timer(p.settings.stale_check_interval_s)  # type: ignore[untyped-decorator]  # faust is untyped
    async def stale_feeds() -> None:
        # Timers run outside any stream event: they may send, never write tables.
        for out in p.ticks.stale_alerts():
            await p.topics[out.topic].send(key=out.key, value=out.value)
            metrics.EVENTS_OUT.labels(SERVICE, out.topic).inc()

    @app.timer(p.ticks.live_check_interval_s)  # type: ignore[untyped-decorator]  # faust is untyped
    async def live_candles() -> None:
        # The forming candles the throttle held back; sends only, like stale_feeds.
        outputs = p.ticks.due_live_candles()
        if outputs:
            await publish(p, outputs)

    @app.timer(5.0)  # type: ignore[untyped-decorator]  # faust is untyped
    async def sample_lag() -> None:
        sample_partitions(p)

    @app.task  # type: ignore[untyped-decorator]  # faust is untyped
    async def serve_health() -> None:
        server = HealthServer(host=p.settings.http_host, port=p.settings.http_port)
        server.liveness["partitions"] = _partitions_check(p)
        server.readiness["assigned"] = _assigned_check(p)
        await server.start()
        metrics.SERVICE_INFO.labels(SERVICE).set(1)
        p.health_port = server.bound_port


def _traced(
    route: str,
    decode: Callable[[Any], Any],
    parent_of: Callable[[Any, Any], str | None],
    process: Callable[[Any, Any], tuple[list[Output], Rejected | None]],
) -> Handler:
    """A handler: `decode` the record (None: nothing to do), then `process` it inside a
    CONSUMER span, the child of `parent_of(message, decoded)`; every output gets the span's
    traceparent header."""

    def handle(message: Any) -> tuple[list[Output], Rejected | None]:
        decoded = decode(message)
        if decoded is None:
            return [], None
        parent = tracing.valid_traceparent(parent_of(message, decoded))
        with tracing.consumer_span(
            f"{route} process",
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            parent=parent,
        ) as span:
            outputs, rejected = process(message, decoded)
        headers = tracing.traceparent_headers(tracing.format_traceparent(span))
        return [dataclasses.replace(out, headers=headers) for out in outputs], rejected

    return handle


def _traced_if_parent(route: str, handle: Handler, *, parent_of: Callable[[Any], Any]) -> Handler:
    """`handle` inside a CONSUMER span when the record's headers (`parent_of`) carry a
    traceparent, plainly otherwise (no new root trace per untraced record)."""
    traced = _traced(
        route,
        lambda m: m,
        lambda m, _m: tracing.header_traceparent(parent_of(m)),
        lambda m, _m: handle(m),
    )

    def handle_maybe_traced(message: Any) -> tuple[list[Output], Rejected | None]:
        if tracing.header_traceparent(parent_of(message)) is None:
            return handle(message)
        return traced(message)

    return handle_maybe_traced


def _make_agent(
    p: Processor, handle: Handler, after: Callable[[], object] | None = None
) -> Callable[[Any], Any]:
    batch_max = p.settings.batch_max
    if batch_max <= 1:

        async def agent(stream: Any) -> None:
            async for event in stream.events():
                await process_batch(p, (event,), handle, after=after)

        return agent

    async def batched_agent(stream: Any) -> None:
        # The batch is acknowledged only after this loop body finishes (at-least-once).
        batches = runtime.take_batches(
            stream, batch_max, within=p.settings.batch_within_s, idle=p.settings.batch_idle_s
        )
        async for events in batches:
            await process_batch(p, events, handle, stream, after)

    return batched_agent


def sample_partitions(p: Processor) -> None:
    """Lag per assigned partition, and the stall detector's view of it."""
    consumer = p.app.consumer
    now = p.clock.monotonic()
    for tp in consumer.assignment():
        highwater = consumer.highwater(tp)
        position = POSITIONS.get((tp.topic, tp.partition))
        if highwater is None or position is None:
            continue
        metrics.CONSUMER_LAG.labels(SERVICE, tp.topic, str(tp.partition)).set(
            max(0, highwater - position)
        )
        stalled = p.stalls.sample(
            tp.topic, tp.partition, position=position, highwater=highwater, now=now
        )
        metrics.PARTITION_STALLED.labels(SERVICE, tp.topic, str(tp.partition)).set(int(stalled))


def _partitions_check(p: Processor) -> Any:
    async def check() -> tuple[bool, str]:
        stalled = p.stalls.stalled(now=p.clock.monotonic())
        if stalled:
            return False, "stalled: " + ", ".join(f"{t}[{n}]" for t, n in stalled)
        return True, "advancing"

    return check


def _assigned_check(p: Processor) -> Any:
    async def check() -> tuple[bool, str]:
        if p.app.rebalancing:
            return False, "rebalancing"
        return True, f"{len(p.app.consumer.assignment())} partitions"

    return check
