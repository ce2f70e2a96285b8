"""One trace across the services, on the real stack: a review (and a tick batch) POSTed to
ingest with tracing on yields spans from ingest, cdc_processor and s3_archiver with one trace
id, the trace crossing PostgreSQL and Debezium in the `trace_parent` column and Kafka in the
`traceparent` header. Spans go to a file (OTEL_TRACES_EXPORTER=pulse_file).

Isolation: the migration that adds `trace_parent` must not reach the shared database while
other branches run against it (their schema tests compare it with their models), so this test
runs its own PostgreSQL cluster (initdb in /tmp, port 61110, logical WAL) with its own
Debezium connector on the stack's Kafka Connect (its own topic prefix, slot and publication),
its own cdc_processor app id and output topics, and its own archiver group and S3 prefix.
Kafka, Kafka Connect with Debezium and S3 are the stack's real servers.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from cdc_processor.app import redirected_outputs
from contracts import datasets, topics
from pulse_cli.processes import stop_process, wait_healthy
from pulse_cli.scripts import load_script

pytestmark = [pytest.mark.integration, pytest.mark.timeout(480)]

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
# this helper's port range (61100-61199)
PG_PORT, INGEST_PORT, CDC_PORT, ARCHIVER_PORT = 61110, 61111, 61112, 61113
TAG = uuid.uuid4().hex[:8]
PREFIX = f"trace{TAG}"  # the private connector's topic prefix
OUTPUTS = redirected_outputs(f"it.trace.{TAG}")
SOURCES = {
    "products": f"{PREFIX}.public.products",
    "reviews-cdc": f"{PREFIX}.public.reviews",
    "ticks-cdc": f"{PREFIX}.public.market_ticks",
}


@pytest.fixture(scope="module")
def archiver_harness() -> ModuleType:
    """tests/integration/s3_archiver/archiver_harness.py: Scenario, ArchiverProcess."""
    return load_script(HERE.parent / "s3_archiver" / "archiver_harness.py", "pulse_it_archiver")


def tracing_env(spans: Path) -> dict[str, str]:
    """Tracing on, every process appending its spans to one file, exported every 200 ms."""
    return {
        "OTEL_TRACES_EXPORTER": "pulse_file",
        "PULSE_TRACES_FILE": str(spans),
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }


@pytest.fixture(scope="module")
def private_postgres(stack_env: dict[str, str], stack_module: ModuleType) -> Iterator[str]:
    """A PostgreSQL 15 cluster of this test's own, as the stack runs its own (as the
    `postgres` user when root); its DATABASE_URL, with ingest's tables migrated."""
    root = Path(tempfile.mkdtemp(prefix="pulse-trace-pg-", dir="/tmp"))
    root.chmod(0o755)  # the cluster's OS user must reach it
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    stack_module.chown_pg(root)
    pg_bin = Path(os.environ.get("PULSE_PG_BIN", stack_module.PG_BIN_DEFAULT))
    as_pg = stack_module.as_pg

    def pg(*argv: str) -> None:
        result = subprocess.run(as_pg(list(argv)), capture_output=True, text=True, cwd="/")
        assert result.returncode == 0, f"{argv[0]}: {result.stderr}{result.stdout}"

    # trust: a throw-away cluster on 127.0.0.1 for the length of one test module
    pg(str(pg_bin / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    options = (
        f"-c port={PG_PORT} -c listen_addresses=127.0.0.1 -c unix_socket_directories={sock} "
        "-c wal_level=logical -c max_replication_slots=4 -c max_wal_senders=4 -c fsync=off"
    )
    pg(str(pg_bin / "pg_ctl"), "-D", str(data), "-l", str(root / "pg.log"), "-w", "-o", options,
       "start")  # fmt: skip
    try:
        admin = f"postgresql://postgres@127.0.0.1:{PG_PORT}/postgres"
        asyncio.run(_execute(admin, "CREATE DATABASE pulse_trace"))
        url = f"postgresql://postgres@127.0.0.1:{PG_PORT}/pulse_trace"
        migrate = subprocess.run(
            [sys.executable, "-m", "ingest", "migrate"],
            env={**os.environ, **stack_env, "DATABASE_URL": url},
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert migrate.returncode == 0, migrate.stderr[-3000:]
        asyncio.run(
            _execute(url, "CREATE PUBLICATION trace_pub FOR TABLE products, reviews, market_ticks")
        )
        yield url
    finally:
        # the connector's slot goes with the cluster: nothing retains WAL after this
        pg(str(pg_bin / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


async def _execute(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def kafka_topics(stack_env: dict[str, str]) -> Iterator[None]:
    """The connector's and the processor's topics, made before anyone subscribes to them."""
    names = [*SOURCES.values(), *OUTPUTS.values()]

    async def admin(action: str) -> None:
        client = AIOKafkaAdminClient(bootstrap_servers=stack_env["KAFKA_BOOTSTRAP_SERVERS"])
        await client.start()
        try:
            if action == "create":
                await client.create_topics(
                    [NewTopic(n, num_partitions=3, replication_factor=1) for n in names]
                )
            else:
                await client.delete_topics(names)
        finally:
            await client.close()

    asyncio.run(admin("create"))
    yield
    asyncio.run(admin("delete"))


@pytest.fixture(scope="module")
def debezium(
    stack_env: dict[str, str], stack_module: ModuleType, private_postgres: str, kafka_topics: None
) -> Iterator[str]:
    """A Debezium connector for the private cluster on the stack's Kafka Connect: the
    project's connector configuration with its own database, prefix, slot and publication."""
    config = json.loads(stack_module.CONNECTOR_FILE.read_text())["config"]
    config.update(
        {
            "database.hostname": "127.0.0.1",
            "database.port": str(PG_PORT),
            "database.user": "postgres",
            "database.password": "unused-trust-auth",
            "database.dbname": "pulse_trace",
            "topic.prefix": PREFIX,
            "slot.name": f"trace_{TAG}",
            "publication.name": "trace_pub",
            "table.include.list": r"public\.products,public\.reviews,public\.market_ticks",
        }
    )
    name = f"trace-{TAG}"
    connect = httpx.Client(base_url=stack_env["KAFKA_CONNECT_URL"], timeout=30)
    response = connect.put(f"/connectors/{name}/config", json=config)
    assert response.status_code in (200, 201), response.text
    try:
        deadline = time.monotonic() + 120
        while True:
            status = connect.get(f"/connectors/{name}/status").json()
            states = [status.get("connector", {}).get("state")]
            states += [t["state"] for t in status.get("tasks", [])]
            if len(states) > 1 and all(s == "RUNNING" for s in states):
                break
            assert "FAILED" not in states, json.dumps(status)[:3000]
            assert time.monotonic() < deadline, f"connector not running: {status}"
            time.sleep(0.5)
        yield name
    finally:
        connect.delete(f"/connectors/{name}")
        connect.close()


def _start(argv: list[str], env: dict[str, str], log: Path, health: str) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    process = subprocess.Popen(argv, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_healthy(health, process, timeout_s=150, interval_s=0.3, log=log)
    except RuntimeError:
        process.kill()
        raise
    return process


@pytest.fixture(scope="module")
def pipeline(
    stack_env: dict[str, str],
    private_postgres: str,
    debezium: str,
    archiver_harness: ModuleType,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Any]]:
    """ingest, cdc_processor and s3_archiver as subprocesses, tracing on, on this test's
    database and topics; yields the API's URL, the spans file and the archive scenario."""
    logs = tmp_path_factory.mktemp("trace-it")
    spans = logs / "spans.jsonl"
    base = {**os.environ, **stack_env, **tracing_env(spans)}
    ingest = _start(
        [sys.executable, "-m", "ingest"],
        {**base, "DATABASE_URL": private_postgres, "INGEST_HTTP_PORT": str(INGEST_PORT)},
        logs / "ingest.log",
        f"http://127.0.0.1:{INGEST_PORT}/healthz",
    )
    cdc = _start(
        [sys.executable, str(HERE / "traced_cdc_worker.py")],
        {
            **base,
            "CDC_APP_ID": f"it-trace-{TAG}",
            "CDC_HTTP_PORT": str(CDC_PORT),
            "CDC_LOG_JSON": "false",
            "CDC_PSEUDONYM_KEY": "integration-test-key",
            "CDC_DATA_DIR": str(logs / "cdc-data"),
            "CDC_BATCH_WITHIN_S": "0.01",
            "TRACE_IT_SOURCES": json.dumps(SOURCES),
            "TRACE_IT_OUTPUTS": json.dumps(OUTPUTS),
        },
        logs / "cdc.log",
        f"http://127.0.0.1:{CDC_PORT}/healthz",
    )

    class EnrichedScenario(archiver_harness.Scenario):  # type: ignore[name-defined,misc]
        def topic_datasets(self) -> dict[str, str]:
            return {OUTPUTS[topics.REVIEWS_ENRICHED.name]: datasets.REVIEWS_ENRICHED.name}

    scenario = EnrichedScenario({**stack_env, **tracing_env(spans)}, "trace")
    archiver = archiver_harness.ArchiverProcess(
        scenario, logs, window_s=2, idle_grace_s=1, write_catalog="false",
        http_port=ARCHIVER_PORT, dlq_topic=OUTPUTS[topics.DLQ.name],
    ).start()  # fmt: skip
    try:
        yield {
            "api": f"http://127.0.0.1:{INGEST_PORT}",
            "database_url": private_postgres,
            "spans": spans,
            "scenario": scenario,
            "logs": logs,
        }
    finally:
        archiver.terminate()
        stop_process(cdc)
        stop_process(ingest)


def read_spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def wait_for_spans(
    pipeline: dict[str, Any], trace_id: str, wanted: set[tuple[str, str]], timeout_s: float
) -> list[dict[str, Any]]:
    """The trace's spans once every (service, span name) in `wanted` is among them."""
    deadline = time.monotonic() + timeout_s
    while True:
        mine = [s for s in read_spans(pipeline["spans"]) if s["trace_id"] == trace_id]
        if wanted <= {(s["service"], s["name"]) for s in mine}:
            return mine
        if time.monotonic() > deadline:
            logs = pipeline["logs"]
            raise AssertionError(
                f"trace {trace_id}: have {sorted((s['service'], s['name']) for s in mine)}, "
                f"want {sorted(wanted)}\n"
                + "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in logs.glob("*.log"))
            )
        await asyncio.sleep(0.5)


@pytest.fixture
async def api(pipeline: dict[str, Any], stack_env: dict[str, str]) -> AsyncIterator[Any]:
    headers = {"X-API-Key": stack_env["PULSE_API_KEY"]}
    async with httpx.AsyncClient(base_url=pipeline["api"], headers=headers, timeout=10) as client:
        yield client


async def new_product(api: Any, name: str) -> str:
    """A product of its own (untraced request); its sku."""
    sku = f"TRACE-{uuid.uuid4().hex[:8]}"
    product = await api.post(
        "/v1/products",
        json={"sku": sku, "name": name, "brand": "Acme", "category": "home"},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    assert product.status_code == 201, product.text
    return sku


def caller_traceparent() -> tuple[str, str]:
    """A caller's own traceparent (the API continues a caller's trace): its trace id, and it."""
    trace_id = uuid.uuid4().hex
    return trace_id, f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"


async def test_a_review_posted_with_tracing_on_is_one_trace_from_the_api_to_the_archive(
    pipeline: dict[str, Any], api: Any
) -> None:
    sku = await new_product(api, "Traced kettle")
    trace_id, traceparent = caller_traceparent()
    review = await api.post(
        "/v1/reviews",
        json={"product_sku": sku, "rating": 2, "body": "It leaks, sadly.", "locale": "en"},
        headers={"Idempotency-Key": uuid.uuid4().hex, "traceparent": traceparent},
    )
    assert review.status_code == 201, review.text
    review_id = review.json()["id"]

    mine = await wait_for_spans(
        pipeline,
        trace_id,
        {
            ("ingest", "POST /v1/reviews"),
            ("cdc_processor", "reviews-cdc process"),
            ("cdc_processor", "reviews-by-product process"),
            ("s3_archiver", "archive write reviews_enriched"),
        },
        timeout_s=180,
    )
    by_name = {s["name"]: s for s in mine}
    request, process = by_name["POST /v1/reviews"], by_name["reviews-cdc process"]
    write = by_name["archive write reviews_enriched"]
    assert request["kind"] == "SERVER" and request["attributes"]["http.response.status_code"] == 201
    assert request["parent_span_id"] == traceparent[36:52]  # the caller's span
    # the row names the request's span: the column is what crossed Debezium
    conn = await asyncpg.connect(pipeline["database_url"], timeout=10)
    try:
        column = await conn.fetchval(
            "SELECT trace_parent FROM reviews WHERE id = $1", uuid.UUID(review_id)
        )
    finally:
        await conn.close()
    assert column == f"00-{trace_id}-{request['span_id']}-01"
    # each hop is the child of the one before it: the review is repartitioned by product
    # id and, its product known, moves on to its SKU's partition unless that is the same one
    assert process["parent_span_id"] == request["span_id"]
    by_id = {s["span_id"]: s for s in mine}
    hops = [by_id[write["parent_span_id"]]]
    while hops[-1]["parent_span_id"] != process["span_id"]:
        hops.append(by_id[hops[-1]["parent_span_id"]])
    assert {hop["name"] for hop in hops} == {"reviews-by-product process"}
    assert 1 <= len(hops) <= 2

    rows = [r for r in await pipeline["scenario"].rows() if r["review_id"] == review_id]
    assert rows, "the review is not in the archive"
    # the column is transport, not data: the archived record has no trace of it
    assert not any("trace" in column for column in rows[0])
    assert write["attributes"]["pulse.archive.object_key"] == rows[0]["_key"]


async def test_a_tick_batch_posted_with_tracing_on_continues_through_the_repartition(
    pipeline: dict[str, Any], api: Any
) -> None:
    symbol = f"TR{uuid.uuid4().hex[:6].upper()}"
    at = datetime.now(tz=UTC).isoformat()
    trace_id, traceparent = caller_traceparent()
    ticks = await api.post(
        "/v1/ticks/batch",
        json={"ticks": [{"symbol": symbol, "asset_class": "crypto", "price": "101.5",
                         "size": "2", "event_time": at, "venue": "it"}]},
        headers={"Idempotency-Key": uuid.uuid4().hex, "traceparent": traceparent},
    )  # fmt: skip
    assert ticks.status_code == 201, ticks.text
    mine = await wait_for_spans(
        pipeline,
        trace_id,
        {
            ("ingest", "POST /v1/ticks/batch"),
            ("cdc_processor", "ticks-cdc process"),
            ("cdc_processor", "ticks-by-symbol process"),
        },
        timeout_s=120,
    )
    by_name = {s["name"]: s for s in mine}
    request = by_name["POST /v1/ticks/batch"]
    repartition, candle = by_name["ticks-cdc process"], by_name["ticks-by-symbol process"]
    assert repartition["parent_span_id"] == request["span_id"]
    assert candle["parent_span_id"] == repartition["span_id"]


async def test_every_review_of_a_batch_continues_the_batch_requests_trace(
    pipeline: dict[str, Any], api: Any
) -> None:
    sku = await new_product(api, "Traced teapot")
    trace_id, traceparent = caller_traceparent()
    batch = await api.post(
        "/v1/reviews/batch",
        json={"reviews": [{"product_sku": sku, "rating": 4, "body": f"Fine pot, number {i}."}
                          for i in range(3)]},
        headers={"Idempotency-Key": uuid.uuid4().hex, "traceparent": traceparent},
    )  # fmt: skip
    assert batch.status_code == 201, batch.text
    deadline = time.monotonic() + 120
    while True:
        mine = [s for s in read_spans(pipeline["spans"]) if s["trace_id"] == trace_id]
        processed = [s for s in mine if s["name"] == "reviews-cdc process"]
        if len(processed) >= 3:
            break
        assert time.monotonic() < deadline, f"spans of the batch's trace: {mine}"
        await asyncio.sleep(0.5)
    (request,) = [s for s in mine if s["name"] == "POST /v1/reviews/batch"]
    assert {s["parent_span_id"] for s in processed} == {request["span_id"]}
    records = {
        (s["attributes"]["messaging.destination.partition.id"],
         s["attributes"]["messaging.kafka.offset"])
        for s in processed
    }  # fmt: skip
    assert len(records) >= 3  # one span per review record, each its own Kafka record
