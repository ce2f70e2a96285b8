"""The fault suite's moving parts: the pipeline's services as processes (pulse up's Supervisor),
the stack's parts (deploy/local/stack.py), an open-loop review load through the API, a watcher
on `reviews.enriched.v1`, and the archive read back through the query service's `once` views.

Everything a run creates carries its run id: the cdc_processor app id (consumer group, table
topics), the archiver's group and S3 prefix, the products' SKUs. Endpoints come from the
stack's env file (PULSE_STACK_DIR, else .stack/), so the suite runs on whichever stack is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from contracts import topics
from pulse_cli import processes
from pulse_cli.scripts import load_script
from pulse_cli.stackenv import read_env_file
from query.app import build_engine
from query.settings import ArchiveSettings, QuerySettings
from servicekit.kafka_auth import env_security_options

REPO = Path(__file__).resolve().parents[2]
STACK_PY = REPO / "deploy" / "local" / "stack.py"
_load = load_script(REPO / "bench" / "e2e" / "_load.py", "pulse_bench_load")
_services = load_script(REPO / "bench" / "e2e" / "_services.py", "pulse_bench_services")
percentile = _load.percentile

# Ports: the chaos helper's range (62100–62149), overridable for a machine that uses them.
PORT_BASE = int(os.environ.get("PULSE_CHAOS_PORT_BASE", "62110"))
INGEST_PORT = PORT_BASE
CDC_PORTS = (PORT_BASE + 1, PORT_BASE + 2, PORT_BASE + 3)
ARCHIVER_PORTS = (PORT_BASE + 4, PORT_BASE + 5)
HEALTH_WAIT_S = 120.0
ENRICHED = topics.REVIEWS_ENRICHED


def stack_env_file() -> Path:
    stack_dir = os.environ.get("PULSE_STACK_DIR")
    return Path(stack_dir) / "env" if stack_dir else REPO / ".stack" / "env"


def stack_part(action: str, part: str) -> float:
    """`stack.py <action> <part>` with this process's environment (its PULSE_STACK_DIR and
    ports); returns how long it took. Raises if it fails."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(STACK_PY), action, part],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"stack.py {action} {part} failed: {done.stdout}{done.stderr}")
    return time.monotonic() - started


# --- the services ------------------------------------------------------------------------


def _instance_spec(module: str, n: int, *, port: int, env: dict[str, str]) -> processes.ServiceSpec:
    """Instance `n` of `module` (several run side by side in one group), healthy on `port`."""
    return processes.ServiceSpec(
        f"{module}-{n}", module, f"http://127.0.0.1:{port}/healthz", env=env
    )


class Pipeline:
    """ingest, cdc_processor workers and archivers of one run, under pulse up's Supervisor
    (its own root: logs and pid files in `<root>/.stack/`, never the real services')."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.run = uuid.uuid4().hex[:8]
        self.app_id = f"pulse-cdc-chaos-{self.run}"
        self.archiver_group = f"s3_archiver-chaos-{self.run}"
        self.prefix = f"chaos/{self.run}"
        (root / ".stack").mkdir(parents=True, exist_ok=True)
        self.supervisor = processes.Supervisor(root, env)
        self.ingest_url = f"http://127.0.0.1:{INGEST_PORT}"

    # specs ---------------------------------------------------------------------------
    def ingest_spec(self) -> processes.ServiceSpec:
        return processes.ServiceSpec(
            "ingest", "ingest", f"{self.ingest_url}/healthz",
            env={"INGEST_HTTP_PORT": str(INGEST_PORT), "INGEST_LOG_LEVEL": "WARNING"},
        )  # fmt: skip

    def cdc_spec(self, n: int) -> processes.ServiceSpec:
        port = CDC_PORTS[n - 1]
        env = {
            "CDC_APP_ID": self.app_id,
            "CDC_HTTP_PORT": str(port),
            "CDC_AUTO_OFFSET_RESET": "latest",
            "CDC_DATA_DIR": str(self.root / f"cdc-data-{n}"),
            "CDC_LOG_JSON": "false",
        }
        return _instance_spec("cdc_processor", n, port=port, env=env)

    def archiver_spec(self, n: int) -> processes.ServiceSpec:
        port = ARCHIVER_PORTS[n - 1]
        env = {
            "ARCHIVER_GROUP_ID": self.archiver_group,
            "ARCHIVER_ROOT_PREFIX": self.prefix,
            "ARCHIVER_TOPIC_DATASETS": orjson.dumps({ENRICHED.name: "reviews_enriched"}).decode(),
            "ARCHIVER_HTTP_PORT": str(port),
            # Objects every few seconds: a gap in the archive shows within the run.
            "ARCHIVER_WINDOW_S": "4",
            "ARCHIVER_IDLE_GRACE_S": "1",
            "ARCHIVER_LOG_JSON": "false",
        }
        return _instance_spec("s3_archiver", n, port=port, env=env)

    # lifecycle -----------------------------------------------------------------------
    def start(self, spec: processes.ServiceSpec, *, wait: bool = True) -> int:
        pid = self.supervisor.start(spec)
        if wait:
            self.wait_healthy(spec)
        return pid

    def wait_healthy(
        self, spec: processes.ServiceSpec, *, timeout_s: float = HEALTH_WAIT_S
    ) -> float:
        started = time.monotonic()
        while not processes.health(spec.health_url, timeout_s=1.0)[0]:
            if self.supervisor.pid(spec.name) is None:
                raise RuntimeError(f"{spec.name} exited: {self.tail(spec.name)}")
            if time.monotonic() - started > timeout_s:
                raise RuntimeError(
                    f"{spec.name} not healthy in {timeout_s:g} s: {self.tail(spec.name)}"
                )
            time.sleep(0.2)
        return time.monotonic() - started

    def kill9(self, name: str) -> None:
        """SIGKILL the service's process group: no clean leave, no flush."""
        pid = self.supervisor.pid(name)
        if pid is None:
            raise RuntimeError(f"{name} is not running")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while self.supervisor.pid(name) is not None and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.05)
        self.supervisor.pid_file(name).unlink(missing_ok=True)

    def stop(self, name: str) -> None:
        self.supervisor.stop(name, grace_s=20)

    def running(self, prefix: str) -> list[str]:
        names = [p.stem for p in self.supervisor.run_dir.glob(f"{prefix}*.pid")]
        return sorted(n for n in names if self.supervisor.pid(n) is not None)

    def stop_all(self) -> None:
        for name in self.running(""):
            self.stop(name)

    def tail(self, name: str, lines: int = 20) -> str:
        try:
            text = self.supervisor.log_file(name).read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def errors_logged(self) -> dict[str, int]:
        """ERROR lines per service log of this run."""
        counts: dict[str, int] = {}
        for log in self.supervisor.log_dir.glob("*.log"):
            counts[log.stem] = sum(
                " ERROR " in line or '"ERROR"' in line for line in log.open(errors="replace")
            )
        return counts

    # set-up -----------------------------------------------------------------------------
    def fast_forward_archiver(self) -> None:
        """A new archiver group starts at the end of the topic, not at its history."""
        asyncio.run(
            _services.fast_forward(
                self.env["KAFKA_BOOTSTRAP_SERVERS"], self.archiver_group, [ENRICHED]
            )
        )

    def drop_tables(self) -> None:
        asyncio.run(_services.drop_state(self.env["KAFKA_BOOTSTRAP_SERVERS"], self.app_id))

    def create_product(self, sku: str) -> None:
        response = httpx.post(
            f"{self.ingest_url}/v1/products",
            json={"sku": sku, "name": f"Chaos {sku}"},
            headers={"X-API-Key": self.env["PULSE_API_KEY"], "Idempotency-Key": f"product-{sku}"},
            timeout=10,
        )
        if response.status_code not in (200, 201):
            raise RuntimeError(f"product {sku}: HTTP {response.status_code} {response.text}")

    def consumer_group_state(self) -> str:
        return asyncio.run(_group_state(self.env["KAFKA_BOOTSTRAP_SERVERS"], self.app_id))

    def archive_counts(self, sku: str) -> dict[str, tuple[int, int]]:
        """review_id → (rows in the `once` view, distinct event_ids) for the SKU, read as the
        query service reads the archive (DuckDB over Parquet on S3, one row per event_id)."""
        engine = self.engine()
        result = engine.run(
            "SELECT review_id, count(*) AS n, count(DISTINCT event_id) AS ids "
            f"FROM reviews_enriched WHERE product_sku = '{sku}' GROUP BY review_id",
            max_rows=1_000_000,
        )
        return {row[0]: (int(row[1]), int(row[2])) for row in result.rows}

    def engine(self) -> Any:
        values = {
            k.lower(): v for k, v in self.env.items() if k.lower() in ArchiveSettings.model_fields
        }
        # Hundreds of small objects through S3Proxy on a busy machine: a generous timeout.
        query = QuerySettings(
            archive_prefix=self.prefix, max_rows=1_000_000, catalog_ttl_s=0.1, timeout_s=120
        )
        return build_engine(query, ArchiveSettings.model_validate(values))

    def archive_objects(self) -> list[str]:
        return self.engine().catalog.files("reviews_enriched")


async def _group_state(bootstrap: str, group: str) -> str:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, **env_security_options(), request_timeout_ms=5000
    )
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([group])
        return str(response.groups[0][2])  # (error_code, group_id, state, …)
    finally:
        await admin.close()


def load_stack_env() -> dict[str, str]:
    path = stack_env_file()
    if not path.is_file():
        raise RuntimeError(f"{path} not found: the stack is not up (make stack-up)")
    env = read_env_file(path)
    # The stack's own file wins over a shell that points elsewhere, except where the caller
    # set a value on purpose for this run.
    return {**env, **{k: v for k, v in os.environ.items() if k in env and k != "PULSE_STACK_DIR"}}


# --- load and watch ---------------------------------------------------------------------


@dataclass
class Accepted:
    due: float  # wall time the review was due (open loop)
    answered: float  # wall time of the 2xx


@dataclass
class Load:
    """Reviews for one SKU at a constant rate, open loop: the n-th is due at start + n/rate
    whether or not earlier ones have answered."""

    url: str
    api_key: str
    sku: str
    rate_per_s: float
    accepted: dict[str, Accepted] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    sent: int = 0

    async def run(self, stop: asyncio.Event) -> None:
        pool = _load.HttpPool(self.url, {"X-API-Key": self.api_key}, connections=64)
        started = time.monotonic()
        tasks: set[asyncio.Task[None]] = set()
        try:
            while not stop.is_set():
                due_mono = started + self.sent / self.rate_per_s
                delay = due_mono - time.monotonic()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
                    continue
                n = self.sent
                self.sent += 1
                task = asyncio.create_task(
                    self._one(pool, n, time.time() + (due_mono - time.monotonic()))
                )
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.wait(tasks, timeout=30)
        finally:
            await pool.close()

    async def _one(self, pool: Any, n: int, due: float) -> None:
        body = orjson.dumps({
            "product_sku": self.sku, "rating": 1 + n % 5, "title": "chaos",
            "body": f"Review {n} under fault load, {self.sku}: works, mostly.", "locale": "en",
        })  # fmt: skip
        try:
            status, payload = await asyncio.wait_for(
                pool.post("/v1/reviews", body, f"{self.sku}-{n}"), 15
            )
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
            self.refused[type(exc).__name__] += 1
            return
        if 200 <= status < 300:
            self.accepted[orjson.loads(payload)["id"]] = Accepted(due, time.time())
        else:
            self.refused[f"HTTP {status}"] += 1


@dataclass
class Watcher:
    """Every record on `reviews.enriched.v1` for the SKU from now on: when each review first
    appeared, how many copies, which event ids."""

    bootstrap: str
    sku: str
    first_seen: dict[str, float] = field(default_factory=dict)
    copies: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    event_ids: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    async def run(self, ready: asyncio.Event, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, **env_security_options(), enable_auto_commit=False,
            max_poll_records=5000,
        )  # fmt: skip
        await consumer.start()
        try:
            tps = [TopicPartition(ENRICHED.name, p) for p in range(ENRICHED.partitions)]
            consumer.assign(tps)
            await consumer.seek_to_end(*tps)
            for tp in tps:
                await consumer.position(tp)  # fix the start before any review is sent
            ready.set()
            needle = f'"product_sku":"{self.sku}"'.encode()
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=200)
                now = time.time()
                for records in batches.values():
                    for record in records:
                        if record.value is None or needle not in record.value:
                            continue
                        value = orjson.loads(record.value)
                        rid = value["review_id"]
                        self.first_seen.setdefault(rid, now)
                        self.copies[rid] += 1
                        self.event_ids[rid].add(value["event_id"])
        finally:
            await consumer.stop()


class ArchivePoller:
    """Lists the run's archive every `interval_s` in a thread and notes when each object first
    appeared: a partition whose owner died shows as a gap between its objects."""

    def __init__(self, pipeline: Pipeline, *, interval_s: float = 1.0) -> None:
        self.pipeline = pipeline
        self.interval_s = interval_s
        self.first_seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ArchivePoller:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):  # S3 down during an outage: try again
                now = time.time()
                for key in self.pipeline.archive_objects():
                    self.first_seen.setdefault(key, now)
            self._stop.wait(self.interval_s)

    def gaps(self, *, after: float) -> dict[int, float]:
        """Per Kafka partition: the longest time without a new object, across `after`."""
        by_partition: dict[int, list[float]] = defaultdict(list)
        for key, seen in self.first_seen.items():
            partition = int(key.rsplit("/", 1)[-1].split("+")[1])
            by_partition[partition].append(seen)
        gaps: dict[int, float] = {}
        for partition, times in by_partition.items():
            times.sort()
            spans = [b - a for a, b in itertools.pairwise(times) if b >= after]
            gaps[partition] = max(spans, default=0.0)
        return gaps

    def first_after(self, moment: float) -> float | None:
        later = [t for t in self.first_seen.values() if t >= moment]
        return min(later) if later else None


# --- figures -------------------------------------------------------------------------------


@dataclass
class FaultResult:
    fault: str
    rate_per_s: float
    accepted: int
    refused: int
    lost: int  # accepted, never on the enriched topic
    duplicates: int  # extra event ids for one review (a duplicate that dedup cannot remove)
    re_emitted: int  # identical copies on the topic (same event_id; dedup removes them)
    archive_lost: int
    archive_duplicates: int
    recovery_s: float
    bound_s: float
    delayed: int
    late_s: float  # a record is delayed past this end-to-end latency
    p99_base_s: float | None
    p99_fault_s: float | None
    fault_s: float  # how long the fault itself took (restart, outage)
    note: str = ""

    def row(self) -> list[str]:
        def s(v: float | None) -> str:
            return "—" if v is None else f"{v:.2f}"

        return [
            self.fault, f"{self.rate_per_s:g}/s", str(self.accepted), str(self.refused),
            str(self.lost), str(self.duplicates), str(self.re_emitted),
            f"{self.archive_lost}/{self.archive_duplicates}", f"{self.fault_s:.1f}",
            f"{self.recovery_s:.1f} (≤ {self.bound_s:g})", str(self.delayed),
            s(self.p99_base_s), s(self.p99_fault_s), self.note,
        ]  # fmt: skip


HEADER = [
    "fault", "load", "accepted", "refused", "lost", "dup", "re-emitted", "archive lost/dup",
    "fault s", "recovery s", "delayed", "p99 before s", "p99 fault s", "note",
]  # fmt: skip


def table(results: list[FaultResult]) -> str:
    rows = [HEADER, *(r.row() for r in results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def analyse(
    fault: str, load: Load, watcher: Watcher, *, injected: float, fault_s: float, bound_s: float,
    archive: dict[str, tuple[int, int]], note: str = "",
) -> FaultResult:  # fmt: skip
    """Loss, duplicates and timing of one fault from what the load got 2xx for and what the
    watcher and the archive saw."""
    accepted = load.accepted
    latency = {
        rid: watcher.first_seen[rid] - a.answered
        for rid, a in accepted.items()
        if rid in watcher.first_seen
    }
    # Before the fault: records that came out before it (one answered just before the fault
    # and caught by it is the fault's).
    base = [v for rid, v in latency.items() if watcher.first_seen[rid] < injected]
    p99_base = percentile(base, 99)
    late_s = max(2.0, 3 * (p99_base or 0.0))
    delayed = [rid for rid, v in latency.items() if v > late_s]
    recovery_s = max((watcher.first_seen[rid] - injected for rid in delayed), default=0.0)
    recovery_s = max(0.0, recovery_s)
    window_end = injected + max(recovery_s, fault_s) + 1.0
    during = [v for rid, v in latency.items() if injected <= accepted[rid].answered <= window_end]
    return FaultResult(
        fault=fault,
        rate_per_s=load.rate_per_s,
        accepted=len(accepted),
        refused=sum(load.refused.values()),
        lost=sum(rid not in watcher.first_seen for rid in accepted),
        duplicates=sum(
            len(watcher.event_ids[rid]) - 1 for rid in accepted if rid in watcher.event_ids
        ),
        re_emitted=sum(
            watcher.copies[rid] - len(watcher.event_ids[rid])
            for rid in accepted
            if rid in watcher.copies
        ),
        archive_lost=sum(rid not in archive for rid in accepted),
        archive_duplicates=sum(n - 1 for n, _ in archive.values()),
        recovery_s=recovery_s,
        bound_s=bound_s,
        delayed=len(delayed),
        late_s=late_s,
        p99_base_s=p99_base,
        p99_fault_s=percentile(during, 99),
        fault_s=fault_s,
        note=note,
    )
