"""Composition root: reads settings, builds the Faust app, its topics and tables, and wires the
pure cores into the agents. The only module that picks concrete classes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import faust
from contracts import topics
from servicekit.clock import Clock, SystemClock
from servicekit.kafka_auth import security_options
from servicekit.partitioner import Murmur2Partitioner
from servicekit.settings import KafkaSettings
from servicekit.topic_admin import ensure_topics

from cdc_processor import alerts, candles, runtime
from cdc_processor.enrichment import Enricher
from cdc_processor.language import LanguageDetector
from cdc_processor.liveness import StallDetector
from cdc_processor.pii import Scrubber
from cdc_processor.pipeline import ReviewFlow, TickFlow
from cdc_processor.sentiment import SentimentScorer
from cdc_processor.settings import CdcSettings
from cdc_processor.writeback import WriteBack

log = logging.getLogger(__name__)

SERVICE = "cdc_processor"
# Faust's LeaderAssignor names its topic `<app id>-__assignor-__leader`.
LEADER_TOPIC_SUFFIX = "__assignor-__leader"
# The contract topics the agents write: what `create_app(outputs=...)` may redirect.
OUTPUT_TOPICS: tuple[topics.TopicSpec, ...] = (
    topics.REVIEWS_ENRICHED,
    topics.ALERTS,
    topics.DLQ,
    topics.MARKET_CANDLES,
    topics.MARKET_CANDLES_LIVE,
)


def faust_broker(bootstrap_servers: str) -> str:
    """`host:port,host2:port` → `kafka://host:port;kafka://host2:port` (Faust's URL form)."""
    urls = []
    for server in bootstrap_servers.split(","):
        server = server.strip()
        if server:
            urls.append(server if "://" in server else f"kafka://{server}")
    return ";".join(urls)


def faust_credentials(kafka: KafkaSettings) -> faust.types.auth.CredentialsT | None:
    """servicekit's security options in Faust's terms (Faust hands them to aiokafka again:
    `credentials_to_aiokafka_auth`), so the worker authenticates like every other client."""
    options = security_options(kafka)
    context = options.get("ssl_context")
    mechanism = options.get("sasl_mechanism")
    if mechanism == "OAUTHBEARER":
        return faust.OAuthCredentials(
            oauth_cb=options["sasl_oauth_token_provider"], ssl_context=context
        )
    if mechanism is not None:
        return faust.SASLCredentials(
            username=options["sasl_plain_username"],
            password=options["sasl_plain_password"],
            ssl_context=context,
            mechanism=mechanism,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


@dataclass(slots=True)
class Processor:
    """Everything the agents use: the app, its topics and tables, and the pure flows."""

    settings: CdcSettings
    app: faust.App
    topics: dict[str, Any]  # topic name → faust topic
    ticks_by_symbol: Any
    reviews_by_product: Any  # internal: reviews keyed by product (id, else SKU)
    products_by_product: Any  # internal: each product change under its id and its SKU
    reviews: ReviewFlow
    ticks: TickFlow
    stalls: StallDetector
    clock: Clock
    # Every table behind the flows, as a write-back view the agents flush once per batch.
    tables: tuple[WriteBack, ...] = ()
    # contract topic name → the topic actually written (benchmarks redirect outputs)
    topic_names: dict[str, str] = field(default_factory=dict)
    handlers: dict[str, Any] = field(default_factory=dict)  # route name → handler
    health_port: int | None = None


def internal_topics(p: Processor) -> tuple[topics.TopicSpec, ...]:
    """The topics Faust declares for `p` when it starts: its tables' changelogs (compacted),
    its repartition topics and its leader topic."""
    partitions, producer = topics.PARTITIONS, topics.Producer.CDC_PROCESSOR
    changelogs = tuple(
        topics.TopicSpec(
            table.changelog_topic.get_topic_name(),
            partitions,
            producer,
            "table key",
            compacted=True,
        )
        for table in p.app.tables.values()
    )
    repartitions = tuple(
        topics.TopicSpec(topic.get_topic_name(), partitions, producer, "repartition key")
        for topic in (p.ticks_by_symbol, p.reviews_by_product, p.products_by_product)
    )
    leader = topics.TopicSpec(
        f"{p.settings.app_id}-{LEADER_TOPIC_SUFFIX}", 1, producer, "Faust's assignor"
    )
    return (*changelogs, *repartitions, leader)


async def create_topics(p: Processor, kafka: KafkaSettings) -> None:
    """Create the contract topics and `internal_topics(p)` that are missing, in one admin
    session, and stop Faust declaring its internal topics again at start: it sends one
    create request per topic, twice (each table's start, then the recovery), ~1 s each on a
    loaded 2-core machine, all of it before a joining worker serves (docs/scaling.md)."""
    await ensure_topics(
        kafka,
        topics.ALL + internal_topics(p),
        replication_factor=p.settings.topic_replication_factor,
    )
    p.app.conf.topic_allow_declare = False


def _raw_topic(app: faust.App, name: str, *, partitions: int, internal: bool = False) -> Any:
    # Raw bytes in and out: tombstones (allow_empty) and undecodable values reach the agent,
    # which decodes them itself and dead-letters what it cannot use.
    return app.topic(
        name,
        schema=runtime.RawSchema(),
        allow_empty=True,
        partitions=partitions,
        internal=internal,
    )


def _json_schema() -> Any:
    # JSON keys so string keys come back as strings after changelog recovery.
    return faust.Schema(key_serializer="json", value_serializer="json")


def redirected_outputs(prefix: str) -> dict[str, str]:
    """`create_app`'s `outputs` sending every output topic to `<prefix>.<contract name>`
    (a benchmark's or a test's own topics)."""
    return {spec.name: f"{prefix}.{spec.name}" for spec in OUTPUT_TOPICS}


def create_app(
    settings: CdcSettings,
    kafka: KafkaSettings,
    *,
    clock: Clock | None = None,
    sources: Mapping[str, str] | None = None,
    outputs: Mapping[str, str] | None = None,
) -> Processor:
    """The app with its agents. `sources`/`outputs` (benchmarks only) swap contract topics for
    others: route name → input topic, contract output topic → replacement topic."""
    clock = clock or SystemClock()
    app = faust.App(
        settings.app_id,
        broker=faust_broker(kafka.kafka_bootstrap_servers),
        broker_credentials=faust_credentials(kafka),
        store="memory://",  # tables recover from their changelog topics on start
        web_enabled=False,  # servicekit's HealthServer serves /healthz and /metrics
        topic_partitions=topics.PARTITIONS,
        topic_replication_factor=settings.topic_replication_factor,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset=settings.auto_offset_reset,
        datadir=str(settings.data_dir / settings.app_id),
        stream_wait_empty=False,
        # No standbys: with the memory store Faust recovers a promoted standby from the start
        # of its changelog anyway (no persisted offset) and drops standby keys when a
        # recovery ends, so a standby would only read every changelog twice (docs/scaling.md).
        table_standby_replicas=0,
        producer_acks=-1,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        consumer_group_instance_id=settings.group_instance_id,
        # Default linger 0 sends one produce request per record (changelog writes included).
        producer_linger=settings.producer_linger_s,
        producer_max_batch_size=256 * 1024,
        producer_partitioner=Murmur2Partitioner(),  # the Java client's partitions, faster
        broker_commit_interval=1.0,
        autodiscover=False,
        # Faust pauses a partition's fetching whenever its stream buffer passes the high-water
        # mark; at the default (4096) a backlog spent a third of its time paused and idle.
        stream_buffer_maxsize=settings.stream_buffer_maxsize,
        Monitor=runtime.QuietMonitor,
        TableManager=runtime.PulseTableManager,  # changelog recovery a batch per wait
    )
    runtime.install(
        app,
        fetch_min_bytes=settings.fetch_min_bytes,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
    )
    named = {
        spec.name: _raw_topic(app, spec.name, partitions=spec.partitions) for spec in topics.ALL
    }
    ticks_by_symbol = _raw_topic(
        app, f"{settings.app_id}-ticks-by-symbol", partitions=topics.PARTITIONS, internal=True
    )

    # Review-side state is partitioned with the stream (docs/scaling.md "State"): reviews and
    # product changes are repartitioned by product through these two topics, and each worker
    # holds (and recovers when it joins) only its partitions of the four tables below.
    reviews_by_product = _raw_topic(
        app, f"{settings.app_id}-reviews-by-product", partitions=topics.PARTITIONS, internal=True
    )
    products_by_product = _raw_topic(
        app, f"{settings.app_id}-products-by-product", partitions=topics.PARTITIONS, internal=True
    )

    def review_table(name: str) -> WriteBack:
        # Co-partitioned with the two topics above: a key is written from, and read by, the
        # events of its product's partition (WriteBack writes the event's changelog partition).
        return WriteBack(
            app.Table(name, default=None, schema=_json_schema(), partitions=topics.PARTITIONS)
        )

    # Candle state is keyed by symbol, the key of both tick topics it is written from.
    candle_states = WriteBack(
        app.Table(
            "candles",
            default=None,
            schema=_json_schema(),
            partitions=topics.PARTITIONS,
        )
    )

    enricher = Enricher(
        scrubber=Scrubber(phone_regions=settings.phone_region_codes),
        scorer=SentimentScorer(),
        detector=LanguageDetector(expected=settings.languages),
        pseudonym_key=settings.pseudonym_key.get_secret_value().encode(),
    )
    products, orphans = review_table("products"), review_table("orphan-reviews")
    dedup, bursts = review_table("review-dedup"), review_table("negative-bursts")
    reviews = ReviewFlow(
        enricher=enricher,
        alert_config=alerts.ReviewAlertConfig(
            negative_rating_max=settings.negative_rating_max,
            negative_text_score=settings.negative_text_score,
            burst_window=timedelta(seconds=settings.burst_window_s),
            burst_threshold=settings.burst_threshold,
        ),
        orphan_max=settings.orphan_reviews_per_product_max,
        products=products,
        orphans=orphans,
        dedup=dedup,
        bursts=bursts,
        clock=clock,
        dedup_ttl=timedelta(days=settings.dedup_ttl_days),
    )
    ticks = TickFlow(
        candle_config=candles.CandleConfig(
            grace=timedelta(seconds=settings.candle_grace_s),
            sma_period=settings.sma_period,
            ema_period=settings.ema_period,
        ),
        market_config=alerts.MarketAlertConfig(
            move_pct=settings.price_move_pct,
            move_window=timedelta(minutes=settings.price_move_window_min),
            stale_after=timedelta(seconds=settings.stale_after_s),
        ),
        states=candle_states,
        stale=alerts.StaleFeedWatch(stale_after=timedelta(seconds=settings.stale_after_s)),
        clock=clock,
        live_interval_s=settings.live_candle_interval_s,
    )
    processor = Processor(
        settings=settings,
        app=app,
        topics=named,
        ticks_by_symbol=ticks_by_symbol,
        reviews_by_product=reviews_by_product,
        products_by_product=products_by_product,
        reviews=reviews,
        ticks=ticks,
        stalls=StallDetector(stall_after_s=settings.stall_after_s),
        clock=clock,
        tables=(products, orphans, dedup, bursts, candle_states),
    )
    for contract_name, replacement in (outputs or {}).items():
        named[contract_name] = _raw_topic(app, replacement, partitions=topics.PARTITIONS)
    from cdc_processor import agents  # agents register on the app they are given

    agents.register(processor, sources=sources)
    return processor
