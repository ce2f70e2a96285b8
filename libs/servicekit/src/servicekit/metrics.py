"""The metric catalogue: every Prometheus metric Pulse exports, defined once with its kind.

Services import metrics from here; a name never appears twice. Each metric lives in the
process-wide default registry, which `health.HealthServer` and ingest's `/metrics` expose.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

REGISTRY = CollectorRegistry(auto_describe=True)
# process_cpu_seconds_total, process_resident_memory_bytes, …: CPU and memory per service on
# the Grafana dashboard (deploy/monitoring), from the process itself, wherever it runs.
ProcessCollector(registry=REGISTRY)

_LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

# --- every service ------------------------------------------------------------------------
SERVICE_INFO = Gauge("pulse_service_up", "1 while the service runs", ["service"], registry=REGISTRY)
EVENTS_IN = Counter(
    "pulse_events_in_total", "Records consumed", ["service", "topic"], registry=REGISTRY
)
EVENTS_OUT = Counter(
    "pulse_events_out_total", "Records produced", ["service", "topic"], registry=REGISTRY
)
DLQ_RECORDS = Counter(
    "pulse_dlq_records_total", "Records sent to the DLQ", ["service", "reason"], registry=REGISTRY
)
CONSUMER_LAG = Gauge(
    "pulse_consumer_lag_records",
    "High watermark minus committed/position offset",
    ["service", "topic", "partition"],
    registry=REGISTRY,
)
PROCESSING_LATENCY = Histogram(
    "pulse_processing_latency_seconds",
    "Time from a record's Kafka timestamp to its processing",
    ["service", "topic"],
    buckets=_LATENCY_BUCKETS_S,
    registry=REGISTRY,
)

# --- ingest ----------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "pulse_http_requests_total",
    "HTTP requests answered",
    ["service", "method", "route", "status"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "pulse_http_request_duration_seconds",
    "HTTP request handling time",
    ["service", "method", "route"],
    buckets=_LATENCY_BUCKETS_S,
    registry=REGISTRY,
)
ROWS_WRITTEN = Counter(
    "pulse_rows_written_total", "Rows written to PostgreSQL", ["table"], registry=REGISTRY
)
DB_UNAVAILABLE = Counter(
    "pulse_db_unavailable_total",
    "Requests answered 503 because PostgreSQL was down or slow",
    registry=REGISTRY,
)

# --- cdc_processor ---------------------------------------------------------------------
REVIEWS_ENRICHED = Counter(
    "pulse_reviews_enriched_total", "Enriched review records emitted", ["op"], registry=REGISTRY
)
PII_REDACTIONS = Counter(
    "pulse_pii_redactions_total", "PII spans replaced by placeholders", ["kind"], registry=REGISTRY
)
CANDLES_EMITTED = Counter(
    "pulse_candles_emitted_total", "Candles closed and emitted", ["symbol"], registry=REGISTRY
)
ALERTS_RAISED = Counter("pulse_alerts_raised_total", "Alerts raised", ["kind"], registry=REGISTRY)
DEDUP_CLAIMS = Gauge(
    "pulse_cdc_dedup_claims", "Review dedup claims tracked for expiry", registry=REGISTRY
)
DEDUP_EXPIRED = Counter(
    "pulse_cdc_dedup_claims_expired_total", "Review dedup claims expired", registry=REGISTRY
)
CDC_LAST_CHANGE = Gauge(
    "pulse_cdc_last_change_timestamp_seconds",
    "Commit time (Debezium source.ts_ms) of the newest change event processed",
    ["topic"],
    registry=REGISTRY,
)
CDC_REPLICATION_LAG = Gauge(
    "pulse_cdc_replication_lag_seconds",
    "Kafka timestamp minus commit time of the newest change event: how long a change waited "
    "in the replication slot and Debezium",
    ["topic"],
    registry=REGISTRY,
)
# Exported by ingest (it holds the database connection), read at every scrape (cdc_health).
CDC_SLOT_LAG = Gauge(
    "pulse_cdc_slot_lag_bytes",
    "WAL written since the replication slot's confirmed position: what Debezium has not "
    "delivered yet",
    ["slot"],
    registry=REGISTRY,
)
CDC_SLOT_ACTIVE = Gauge(
    "pulse_cdc_slot_active",
    "1 while a reader (Debezium) holds the replication slot; 0 when it is idle or missing",
    ["slot"],
    registry=REGISTRY,
)
PARTITION_STALLED = Gauge(
    "pulse_partition_stalled",
    "1 when a partition's lag grows while its position does not advance",
    ["service", "topic", "partition"],
    registry=REGISTRY,
)

# --- s3_archiver -----------------------------------------------------------------------
ARCHIVE_RECORDS = Counter(
    "pulse_archive_records_total", "Rows written to the archive", ["dataset"], registry=REGISTRY
)
ARCHIVE_BYTES = Counter(
    "pulse_archive_bytes_total", "Parquet bytes written to S3", ["dataset"], registry=REGISTRY
)
ARCHIVE_OBJECTS = Counter(
    "pulse_archive_objects_total", "Objects written to S3", ["dataset"], registry=REGISTRY
)
ARCHIVE_OPEN_BUFFERS = Gauge(
    "pulse_archive_open_buffers", "Buffers holding unwritten records", registry=REGISTRY
)
ARCHIVE_BUFFERED_BYTES = Gauge(
    "pulse_archive_buffered_bytes", "Approximate bytes held in open buffers", registry=REGISTRY
)
ARCHIVE_OLDEST_UNFLUSHED_AGE = Gauge(
    "pulse_archive_oldest_unflushed_seconds",
    "Age of the oldest record not yet in S3",
    registry=REGISTRY,
)
S3_ERRORS = Counter(
    "pulse_s3_errors_total", "S3 calls that failed (before retry)", ["operation"], registry=REGISTRY
)
COMMIT_LAG = Gauge(
    "pulse_archive_commit_lag_records",
    "Records consumed but not yet committed",
    ["topic", "partition"],
    registry=REGISTRY,
)

# --- crawler ---------------------------------------------------------------------------
PAGES_FETCHED = Counter(
    "pulse_crawler_pages_fetched_total", "Pages fetched", ["site", "status"], registry=REGISTRY
)
ROBOTS_DENIALS = Counter(
    "pulse_crawler_robots_denials_total", "URLs robots.txt disallowed", ["site"], registry=REGISTRY
)
BLOCKED_ADDRESSES = Counter(
    "pulse_crawler_blocked_addresses_total",
    "Requests refused because the address is not public",
    ["reason"],
    registry=REGISTRY,
)
CRAWLED_REVIEWS = Counter(
    "pulse_crawler_reviews_total",
    "Reviews extracted and published",
    ["site", "stage"],  # stage: extracted | published
    registry=REGISTRY,
)
SITE_LAG = Gauge(
    "pulse_crawler_site_lag_seconds",
    "Seconds since the site's last complete crawl",
    ["site"],
    registry=REGISTRY,
)
QUOTES_POLLED = Counter(
    "pulse_crawler_quotes_total", "Quotes polled and published", ["feed"], registry=REGISTRY
)
STRUCTURED_DATA_ERRORS = Counter(
    "pulse_crawler_structured_data_errors_total",
    "Structured-data blocks that could not be read; the page's other blocks are kept",
    ["site", "syntax"],  # syntax: json-ld | microdata | rdfa | html
    registry=REGISTRY,
)
SLOW_PAGES = Counter(
    "pulse_crawler_slow_pages_total",
    "URLs given up as slow: a trickling body or the URL's time budget spent",
    ["site", "reason"],  # reason: trickle | budget
    registry=REGISTRY,
)
ROBOTS_FETCHES = Counter(
    "pulse_crawler_robots_fetches_total",
    "robots.txt fetches sent (concurrent askers for one origin share one)",
    ["origin"],
    registry=REGISTRY,
)

# --- market_feeds ----------------------------------------------------------------------
FEED_MESSAGES = Counter(
    "pulse_feed_messages_total", "WebSocket frames read from a feed", ["feed"], registry=REGISTRY
)
FEED_TRADES = Counter(
    "pulse_feed_trades_total", "Trades decoded and published", ["feed"], registry=REGISTRY
)
FEED_SKIPPED = Counter(
    "pulse_feed_skipped_total",
    "Frames or trades not published (duplicate, unknown_type, unknown_symbol, malformed…)",
    ["feed", "reason"],
    registry=REGISTRY,
)
FEED_GAPS = Counter(
    "pulse_feed_gaps_total", "Sequence gaps detected", ["feed", "reason"], registry=REGISTRY
)
FEED_GAP_MISSING = Counter(
    "pulse_feed_gap_missing_total", "Numbered messages a gap left out", ["feed"], registry=REGISTRY
)
FEED_RECONNECTS = Counter(
    "pulse_feed_reconnects_total",
    "Connections lost or refused, then retried",
    ["feed", "reason"],
    registry=REGISTRY,
)
FEED_CONNECTED = Gauge(
    "pulse_feed_connected",
    "1 while the feed is connected and subscribed",
    ["feed"],
    registry=REGISTRY,
)
FEED_PUBLISH_LAG = Histogram(
    "pulse_feed_publish_lag_seconds",
    "From a trade's exchange timestamp to Kafka acknowledging it",
    ["feed"],
    buckets=_LATENCY_BUCKETS_S,
    registry=REGISTRY,
)

# --- query -----------------------------------------------------------------------------
QUERIES = Counter("pulse_queries_total", "SQL queries answered", ["outcome"], registry=REGISTRY)

# --- notifier --------------------------------------------------------------------------
NOTIFICATIONS = Counter(
    "pulse_notifier_notifications_total",
    "Notification attempts by outcome: delivered, retried, failed (given up, to the DLQ)",
    ["receiver", "outcome"],
    registry=REGISTRY,
)
NOTIFIER_ALERTS_DROPPED = Counter(
    "pulse_notifier_alerts_dropped_total",
    "Alerts not sent to a receiver: silenced, inhibited, or a duplicate within repeat_interval",
    ["receiver", "reason"],
    registry=REGISTRY,
)
NOTIFIER_DELIVERY_LATENCY = Histogram(
    "pulse_notifier_delivery_latency_seconds",
    "From an alert's arrival at the notifier to its receiver's acknowledgement (incl. group_wait)",
    ["receiver"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0),
    registry=REGISTRY,
)
NOTIFIER_OUTBOX = Gauge(
    "pulse_notifier_outbox_items",
    "Alerts waiting to be grouped plus notifications not yet delivered, per receiver",
    ["receiver"],
    registry=REGISTRY,
)
# --- dashboard ---------------------------------------------------------------------------
DASHBOARD_CLIENTS = Gauge(
    "pulse_dashboard_clients", "Browsers connected to the live stream", registry=REGISTRY
)
DASHBOARD_FRAMES_SENT = Counter(
    "pulse_dashboard_frames_sent_total",
    "Stream frames written to clients (snapshots and deltas)",
    ["kind"],
    registry=REGISTRY,
)
DASHBOARD_COALESCED = Counter(
    "pulse_dashboard_coalesced_total",
    "Queued updates replaced by a newer one for the same key before a client received them",
    registry=REGISTRY,
)
DASHBOARD_RESYNCS = Counter(
    "pulse_dashboard_resyncs_total",
    "Fresh snapshots sent because a client's queue overflowed",
    registry=REGISTRY,
)
DASHBOARD_RESUMES = Counter(
    "pulse_dashboard_resumes_total",
    "Reconnections carrying Last-Event-ID: `replayed` (the missed deltas from the replay "
    "buffer) or `snapshot` (too old, or another server instance: a fresh snapshot)",
    ["outcome"],
    registry=REGISTRY,
)
DASHBOARD_QUEUE_MAX_KEYS = Gauge(
    "pulse_dashboard_client_queue_max_keys",
    "The longest client queue at the last flush (bounded by DASHBOARD_CLIENT_QUEUE_MAX_KEYS)",
    registry=REGISTRY,
)
DASHBOARD_DROPPED_CLIENTS = Counter(
    "pulse_dashboard_dropped_clients_total",
    "Clients disconnected by the server (socket stuck past the stall timeout)",
    registry=REGISTRY,
)
DASHBOARD_REJECTED_CLIENTS = Counter(
    "pulse_dashboard_rejected_clients_total",
    "Stream connections refused",
    ["reason"],
    registry=REGISTRY,
)
DASHBOARD_MALFORMED = Counter(
    "pulse_dashboard_malformed_records_total",
    "Records skipped because they did not decode into their topic's contract event",
    ["topic"],
    registry=REGISTRY,
)


def render() -> tuple[bytes, str]:
    """The registry in Prometheus text format, with its content type."""
    return generate_latest(REGISTRY), "text/plain; version=0.0.4; charset=utf-8"


# --- quality ------------------------------------------------------------------------------
DQ_CHECKS = Counter(
    "pulse_dq_checks_total",
    "Data-quality check results by dataset and outcome (passed, failed, error)",
    ["dataset", "outcome"],
    registry=REGISTRY,
)
