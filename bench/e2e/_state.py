"""A realistic processor state for the end-to-end bench: review-dedup claims and a product
catalogue written to the bench processor's table changelogs before it starts.

`_services.py up` deletes the bench processor's tables so each run starts empty; a processor
in production holds the claims of its dedup TTL (30 days) and the whole catalogue. With
`--state-claims N` it then writes N live dedup claims (made over the last day, oldest first,
as the processor appends them) and `--state-products M` products to the changelog topics,
which the processor recovers into its tables on start, as after a restart in production.

Why not a day at the target rate: 1,000 reviews/s for a day is 86.4 M claims. Measured here
(2026-12-07, load 6-9, the real processor app recovering a pre-loaded state): 1 M claims and
100,000 product keys took 37 s to pre-load, 278 s to recover (~4,000 records/s: the global
tables then recovered one record at a time, `recovery_buffer_size=1`, from one changelog
partition) and 648 MB of the processor's memory (~590 bytes a record). The tables are now
partitioned (docs/scaling.md "State"): one worker still recovers all of it, each of several
workers its partitions' share. A day at the target rate would
take ~6 hours to recover and ~50 GB, on a 24 GB machine shared with the stack; 5 M claims
already ~21 minutes and ~3 GB. The default, 1 M claims (~4.6 hours of reviews at 60/s, a day
at 11.6/s) and 50,000 products, keeps the benchmark's start within ~5 minutes here.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator

import faust.serializers.codecs as codecs
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from contracts import topics
from servicekit.partitioner import murmur2

DEFAULT_CLAIMS = 1_000_000
DEFAULT_PRODUCTS = 50_000
CLAIMS_SPAN_S = 86_400.0  # the claims were made over the last day (well inside the TTL)
# Bench products get ids far above any the demo's database hands out, so none is joined to
# a posted review in place of its real product.
PRODUCT_ID_BASE = 1_000_000_000
# The processor's review tables (cdc_processor.app.create_app) and Faust's changelog naming;
# a unit test checks these against the real app.
DEDUP_TABLE, PRODUCTS_TABLE = "review-dedup", "products"


def home_partition(key: str) -> int:
    """The table partition the processor keeps `key` in: a product key (`id:…`, `sku:…`) is
    written from the repartition topic's partition of that key (the producer's murmur2); a
    claim, from its product's, which these synthetic claims do not have: spread the same way."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % topics.PARTITIONS


def changelog_topic(app_id: str, table: str) -> str:
    return f"{app_id}-{table}-changelog"


def _json(value: object) -> bytes:
    """Serialized as the tables' schema does (`faust.Schema(key_serializer="json", …)`)."""
    return codecs.dumps("json", value)


def dedup_claims(n: int, *, now_s: float) -> Iterator[tuple[bytes, bytes]]:
    """`n` live claims as changelog records: a 32-hex-digit key (the shape of
    `enrichment.dedup_key`) → {"id": review id, "at": when claimed}, oldest first, spread over
    the last `CLAIMS_SPAN_S` before `now_s`."""
    for i in range(n):
        key = hashlib.sha256(b"bench-state\x1f%d" % i).hexdigest()[:32]
        at = now_s - CLAIMS_SPAN_S * (n - i) / n
        yield _json(key), _json({"id": str(uuid.UUID(int=i + 1)), "at": at})


def products(n: int) -> Iterator[tuple[bytes, bytes]]:
    """`n` products, each under its two keys as `ReviewFlow.on_product` writes them."""
    for i in range(n):
        pid = PRODUCT_ID_BASE + i
        info = {
            "id": pid,
            "sku": f"BENCH-STATE-{pid}",
            "name": f"Bench product {i}",
            "brand": f"Brand {i % 500}",
            "category": f"category-{i % 40}",
        }
        value = _json(info)
        yield _json(f"id:{pid}"), value
        yield _json(f"sku:{info['sku']}"), value


async def preload(
    bootstrap: str, app_id: str, *, claims: int, products_n: int, now_s: float
) -> int:
    """Write the state to `app_id`'s changelog topics (created as Faust would: the tables'
    partition count, compacted), each record in the partition the processor keeps it in;
    the number of records written. Call it after the tables were dropped and before the
    processor starts."""
    plan = {
        changelog_topic(app_id, DEDUP_TABLE): dedup_claims(claims, now_s=now_s),
        changelog_topic(app_id, PRODUCTS_TABLE): products(products_n),
    }
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    await admin.start()
    try:
        response = await admin.create_topics(
            [
                NewTopic(name, topics.PARTITIONS, 1, topic_configs={"cleanup.policy": "compact"})
                for name in plan
            ]
        )
    finally:
        await admin.close()
    for name, code, *message in response.topic_errors:
        # A topic kept from an earlier run (`--keep-state`) stays: the records add to it.
        if code not in (0, TopicAlreadyExistsError.errno):
            raise RuntimeError(f"could not create {name}: error {code} {message}")
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=50,
        max_batch_size=1024 * 1024,
        compression_type="gzip",  # the only codec aiokafka has without an extra package
        acks=1,
    )
    await producer.start()
    written = 0
    try:
        for topic, records in plan.items():
            for key, value in records:
                partition = home_partition(codecs.loads("json", key))
                await producer.send(topic, value=value, key=key, partition=partition)
                written += 1
        await producer.flush()
    finally:
        await producer.stop()
    return written
