"""Composition root: reads settings, builds the Kafka clients, the S3 store and the health server.

`python -m s3_archiver` runs the archiver; `python -m s3_archiver athena-ddl [DIR]` regenerates
`deploy/athena/<dataset>.sql` from the contracts.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

from contracts import datasets
from servicekit import metrics, tracing
from servicekit.clock import SystemClock
from servicekit.health import HealthServer
from servicekit.interpreter import tune_gc, tune_malloc
from servicekit.kafka import make_consumer, make_producer
from servicekit.logging import configure_logging
from servicekit.settings import KafkaSettings, load_settings

from s3_archiver import catalog
from s3_archiver.archiver import SERVICE, Archiver, routes_for
from s3_archiver.object_store import (
    ObjectStore,
    StoreUnavailableError,
    ensure_bucket,
    make_store,
    s3_client,
)
from s3_archiver.settings import ArchiverSettings, S3Settings

log = logging.getLogger(__name__)

LIVENESS_STALL_S = 120.0
# Larger fetches per partition: fewer round trips while draining a backlog (bench/s3_archiver).
FETCH_MAX_BYTES = 16 * 1024 * 1024
PARTITION_FETCH_BYTES = 4 * 1024 * 1024
# The parser thread takes the GIL back from the loop thread a few times per poll (between its
# Arrow calls, which release it); with the default 5 ms switch interval each of those waits
# could last 5 ms while the loop decodes records (bench: +0.04x throughput at 1 ms).
SWITCH_INTERVAL_S = 0.001


def configure_interpreter() -> None:
    """Process-wide settings the archiver's threads rely on (called before the loop starts):
    the switch interval above, and the collector and allocator tuned for a stream
    (servicekit.interpreter)."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    tune_gc()
    tune_malloc()


async def write_catalog(store: ObjectStore, settings: ArchiverSettings, bucket: str) -> None:
    """The catalog next to the data: JSON per dataset, plus the Athena and DuckDB SQL."""
    root = settings.root_prefix.strip("/")
    for name in sorted(set(settings.topic_datasets.values())):
        dataset = datasets.BY_NAME[name]
        await store.put(
            catalog.catalog_key(dataset, root=root),
            catalog.catalog_json(dataset, bucket=bucket, root=root),
        )
        await store.put(
            f"{root}/_catalog/{name}.athena.sql",
            catalog.athena_ddl(dataset, bucket=bucket, root=root).encode(),
        )
        await store.put(
            f"{root}/_catalog/{name}.duckdb.sql",
            (catalog.duckdb_view_sql(dataset, bucket=bucket, root=root) + ";\n").encode(),
        )


async def serve(settings: ArchiverSettings, s3: S3Settings, kafka: KafkaSettings) -> None:
    clock = SystemClock()
    routes = routes_for({t: datasets.BY_NAME[d] for t, d in settings.topic_datasets.items()})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async with s3_client(s3, timeout_s=settings.s3_timeout_s) as client:
        await ensure_bucket(client, s3.s3_bucket)
        store = make_store(client, s3, settings, clock)
        if settings.write_catalog:
            try:
                await write_catalog(store, settings, s3.s3_bucket)
            except StoreUnavailableError as exc:
                # The data path pauses and retries on its own; the catalog is rewritten on
                # the next start, so an S3 outage at start-up must not stop archiving.
                log.warning("catalog not written (S3 unavailable): %s", exc)
        consumer = make_consumer(
            kafka,
            group_id=settings.group_id,
            client_id=SERVICE,
            max_poll_interval_ms=300_000,
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=max(300, settings.session_timeout_ms // 4),
            fetch_max_bytes=FETCH_MAX_BYTES,
            max_partition_fetch_bytes=PARTITION_FETCH_BYTES,
        )
        producer = make_producer(kafka, client_id=f"{SERVICE}-dlq")
        archiver = Archiver(
            settings=settings,
            consumer=consumer,
            producer=producer,
            store=store,
            routes=routes,
            clock=clock,
        )
        consumer.subscribe(sorted(routes), listener=archiver.listener)
        health = HealthServer(host=settings.http_host, port=settings.http_port)

        async def alive() -> tuple[bool, str]:
            stalled = clock.monotonic() - archiver.last_loop_mono
            return stalled < LIVENESS_STALL_S, f"last loop {stalled:.1f}s ago"

        async def ready() -> tuple[bool, str]:
            state = archiver.health()
            return not state["store_down"], str(state)

        health.liveness["loop"] = alive
        health.readiness["store"] = ready
        await producer.start()
        await consumer.start()
        if settings.http_port:
            await health.start()
        metrics.SERVICE_INFO.labels(SERVICE).set(1)
        log.info(
            "archiving %s under s3://%s/%s/", sorted(routes), s3.s3_bucket, settings.root_prefix
        )
        try:
            await archiver.run(stop)
        finally:
            metrics.SERVICE_INFO.labels(SERVICE).set(0)
            await consumer.stop()
            await producer.stop()
            await health.stop()


def generate_athena(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for dataset in datasets.ALL:
        path = out_dir / f"{dataset.name}.sql"
        path.write_text(catalog.athena_ddl(dataset), encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print(
            "usage: python -m s3_archiver [athena-ddl [OUT_DIR]]\n\n"
            "Archive the topics of ARCHIVER_TOPIC_DATASETS to Parquet on S3 (no arguments), or\n"
            "write the Athena DDL to OUT_DIR (default deploy/athena).\n\n"
            "Settings: ARCHIVER_*, S3_*, AWS_* and KAFKA_BOOTSTRAP_SERVERS environment variables\n"
            "(services/s3_archiver/README.md)."
        )
        return
    if args and args[0] == "athena-ddl":
        out = Path(args[1]) if len(args) > 1 else Path("deploy/athena")
        for path in generate_athena(out):
            print(path)
        return
    settings = load_settings(ArchiverSettings)
    s3 = load_settings(S3Settings)
    kafka = load_settings(KafkaSettings)
    configure_logging(SERVICE, level=settings.log_level, json=settings.log_json)
    tracing.configure(SERVICE)
    configure_interpreter()
    asyncio.run(serve(settings, s3, kafka))
