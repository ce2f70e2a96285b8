"""The demo flow: drive the API, crawl the sample site, stream ticks, check the exchange
feeds (market_feeds on the local simulator), wait for the archive, run the data-quality
checks and digests over it, show the insights, and compare what went in with what came out,
for this run only.

`run_demo` is what `pulse demo` calls; the e2e test calls the same function at a smaller
scale and asserts on the returned `DemoReport`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from contracts import topics
from quality.settings import QualitySettings
from query import insights
from query.app import build_engine
from query.engine import QueryEngine
from query.insights import sql_literal
from query.settings import ArchiveSettings, QuerySettings
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

from pulse_cli import demo_receivers, kafka_scan, processes, scenario
from pulse_cli.processes import DEMO_FEED_SYMBOLS
from pulse_cli.render import progress_bar, result_table
from pulse_cli.scripts import load_script

log = logging.getLogger(__name__)

TICK_STEP_PAUSE_S = 0.1
CATALOGUE_SETTLE_S = 3.0
PROCESSOR_GROUP = "pulse-cdc-processor"
BACKLOG_MAX = 2000  # records cdc_processor may be behind before a run waits for it
SCAN_SLACK = timedelta(seconds=10)  # topic scans start this long before the run (clock skew)
FIXTURE_SITE = Path("tests/fixtures/crawler_site/crawler_fixture_site.py")
FIXTURE_SKUS = {
    "KTL-100": "Electric Kettle",
    "TST-200": "Toaster",
    "BLN-300": "Blender",
    "GRL-400": "Grill",
    "MXR-500": "Mixer",
    "CFM-600": "Coffee Maker",
}


@dataclass(slots=True)
class Stage:
    name: str
    expected: int
    actual: int
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.actual == self.expected


@dataclass(slots=True)
class ApiOutcome:
    review_ids: dict[str, str] = field(default_factory=dict)  # scenario ref → API id
    products_ok: int = 0
    edits_ok: int = 0
    deletes_ok: int = 0
    ticks_ok: int = 0
    bad_refused: dict[str, int] = field(default_factory=dict)  # why → status
    failures: list[str] = field(default_factory=list)


@dataclass(slots=True)
class DemoReport:
    run_id: str
    scenario: scenario.Scenario
    api: ApiOutcome
    crawled_ids: set[str]
    stages: list[Stage]
    archive_location: str
    waited_s: float
    started: datetime  # the run's records were all written after this
    backlog: int | None = None  # cdc_processor's lag when the run started sending

    @property
    def passed(self) -> bool:
        return all(stage.ok for stage in self.stages) and not self.api.failures

    def app_ids(self) -> list[str]:
        return sorted(self.api.review_ids.values())

    def deleted_ids(self) -> list[str]:
        return sorted(self.api.review_ids[ref] for ref in self.scenario.deletes)


# --- sizes ------------------------------------------------------------------------------


def demo_scenario(run_id: str, *, scale: float, start: datetime) -> scenario.Scenario:
    def scaled(n: int, low: int) -> int:
        return max(low, round(n * scale))

    return scenario.build(
        run_id,
        products=scaled(8, 3),
        reviews_per_product=scaled(12, 4),
        burst=scaled(6, 4),
        edits=scaled(10, 2),
        deletes=scaled(6, 2),
        minutes=max(6, round(8 * min(scale, 1.5))),
        ticks_per_minute=scaled(6, 3),
        start=start,
    )


def tick_start(root: Path, *, minutes: int, now: datetime) -> datetime:
    """A tick timeline in the recent past that never overlaps an earlier run's.

    Candles close on event time, so a re-run whose ticks fell before the previous run's
    would be refused as late for BTC-USD/ETH-USD; the last end is kept in .stack/demo.
    """
    state = root / ".stack" / "demo" / "ticks.json"
    start = scenario.minute_floor(now) - timedelta(minutes=minutes + 2)
    try:
        last_end = datetime.fromisoformat(json.loads(state.read_text())["last_end"])
        start = max(start, scenario.minute_floor(last_end) + timedelta(minutes=1))
    except (OSError, ValueError, KeyError):
        pass
    state.parent.mkdir(parents=True, exist_ok=True)
    end = start + timedelta(minutes=minutes + 1)
    state.write_text(json.dumps({"last_end": end.isoformat()}))
    return start


# --- API --------------------------------------------------------------------------------


async def drive_api(
    sc: scenario.Scenario, *, api_url: str, api_key: str, progress: Progress | None = None
) -> ApiOutcome:
    """Seed products, post reviews, edit and delete some, stream ticks, send bad requests."""
    outcome = ApiOutcome()
    headers = {"X-API-Key": api_key}
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    gate = asyncio.Semaphore(24)
    async with httpx.AsyncClient(
        base_url=api_url, headers=headers, timeout=30.0, limits=limits
    ) as client:

        async def send(
            method: str, path: str, *, key: str | None = None, body: Any = None
        ) -> httpx.Response:
            extra = {"Idempotency-Key": key} if key else {}
            async with gate:
                for attempt in range(5):
                    response = await client.request(method, path, json=body, headers=extra)
                    if response.status_code not in (429, 503):
                        return response
                    await asyncio.sleep(0.2 * (attempt + 1))
                return response

        task = None
        if progress is not None:
            total = (
                len(sc.products)
                + len(FIXTURE_SKUS)
                + len(sc.reviews)
                + len(sc.edits)
                + len(sc.deletes)
                + len(sc.ticks)
                + len(sc.bad_requests)
            )
            task = progress.add_task("API requests", total=total)

        def advance(n: int = 1) -> None:
            if progress is not None and task is not None:
                progress.advance(task, n)

        async def product(body: dict[str, str], key: str) -> None:
            response = await send("POST", "/v1/products", key=key, body=body)
            if response.status_code in (200, 201, 409):
                outcome.products_ok += 1
            else:
                outcome.failures.append(f"product {body['sku']}: {response.status_code}")
            advance()

        fixture_products = [
            {"sku": sku, "name": name, "brand": "HomeGear", "category": "kitchen"}
            for sku, name in FIXTURE_SKUS.items()
        ]
        await asyncio.gather(
            *(product(p.body(), f"{sc.run_id}-p-{p.sku}") for p in sc.products),
            *(product(p, f"fixture-p-{p['sku']}") for p in fixture_products),
        )

        async def review(item: scenario.ReviewInput) -> None:
            response = await send("POST", "/v1/reviews", key=item.ref, body=item.request())
            if response.status_code in (200, 201):
                outcome.review_ids[item.ref] = str(response.json()["id"])
            else:
                outcome.failures.append(
                    f"review {item.ref}: {response.status_code} {response.text[:200]}"
                )
            advance()

        # A catalogue exists before its reviews: give the processor a moment to see the
        # products first (a review seen earlier is joined later; its alerts name the id).
        await asyncio.sleep(CATALOGUE_SETTLE_S)
        await asyncio.gather(*(review(r) for r in sc.reviews))

        async def edit(item: scenario.Edit) -> None:
            rid = outcome.review_ids.get(item.ref)
            if rid is None:
                return
            response = await send(
                "PATCH",
                f"/v1/reviews/{rid}",
                key=f"{item.ref}-edit",
                body={"rating": item.rating, "body": item.body},
            )
            if response.status_code == 200:
                outcome.edits_ok += 1
            else:
                outcome.failures.append(f"edit {item.ref}: {response.status_code}")
            advance()

        async def delete(ref: str) -> None:
            rid = outcome.review_ids.get(ref)
            if rid is None:
                return
            response = await send("DELETE", f"/v1/reviews/{rid}", key=f"{ref}-delete")
            if response.status_code in (200, 202, 204):
                outcome.deletes_ok += 1
            else:
                outcome.failures.append(f"delete {ref}: {response.status_code}")
            advance()

        await asyncio.gather(*(edit(e) for e in sc.edits), *(delete(d) for d in sc.deletes))

        # Ticks in event-time order, one time step per request, paced: the CDC topic is keyed
        # by tick id, so a symbol's ticks cross three partitions and can overtake each other;
        # pacing keeps that within the processor's close grace, as a live feed would.
        steps: dict[datetime, list[scenario.Tick]] = {}
        for tick in sc.ticks:
            steps.setdefault(tick.event_time, []).append(tick)
        for n, chunk in enumerate(steps.values()):
            if n:
                await asyncio.sleep(TICK_STEP_PAUSE_S)
            response = await send(
                "POST",
                "/v1/ticks/batch",
                key=f"{sc.run_id}-ticks-{n}",
                body={"ticks": [t.request() for t in chunk]},
            )
            if response.status_code in (200, 201, 202):
                outcome.ticks_ok += len(chunk)
            else:
                outcome.failures.append(f"ticks {n}: {response.status_code} {response.text[:200]}")
            advance(len(chunk))

        for n, bad in enumerate(sc.bad_requests):
            request_headers = {"Idempotency-Key": f"{sc.run_id}-bad-{n}"}
            if not bad.authenticated:
                request_headers["X-API-Key"] = ""
            content = bad.body if isinstance(bad.body, str) else orjson.dumps(bad.body)
            response = await client.request(
                bad.method,
                bad.path,
                content=content,
                headers={"Content-Type": "application/json", **request_headers},
            )
            outcome.bad_refused[bad.why] = response.status_code
            advance()
    return outcome


# --- crawler ----------------------------------------------------------------------------


@contextmanager
def fixture_site(root: Path) -> Iterator[Any]:
    """The crawler engineer's sample review site, served on loopback for the run."""
    path = root / FIXTURE_SITE
    module = load_script(path, "crawler_fixture_site")
    with module.FixtureSite(crawl_delay_s=0.0) as site:
        yield site


def crawl_once(
    root: Path, env: dict[str, str], site_name: str, origin: str, *, timeout_s: float = 180.0
) -> int:
    """`python -m crawler --once` over the sample site; its own state dir and HTTP port."""
    config = {
        "sites": [
            {
                "name": site_name,
                "sitemaps": [f"{origin}/sitemap.xml"],
                "start_urls": [f"{origin}/index.html"],
                "allowed_patterns": ["/products/", "/index\\.html$"],
                "min_delay_s": 0.0,
                "product": {
                    "sku_is_ours": True,
                    "refs": {"gtin13:4006381400008": "GRL-400"},
                    "url_rules": [{"pattern": "/products/(?P<sku>[a-z]{3}-\\d{3})\\.html"}],
                },
            }
        ],
    }
    with tempfile.TemporaryDirectory(prefix="pulse-demo-crawl-") as tmp:
        sites_file = Path(tmp) / "sites.yaml"
        sites_file.write_text(json.dumps(config))  # JSON is YAML
        child_env = {
            **os.environ,
            **env,
            "PYTHONUNBUFFERED": "1",
            "CRAWLER_SITES_FILE": str(sites_file),
            "CRAWLER_STATE_DIR": tmp,
            "CRAWLER_ALLOW_PRIVATE_NETWORKS": "127.0.0.0/8",
            "CRAWLER_HTTP_HOST": "127.0.0.1",
            "CRAWLER_HTTP_PORT": "0",
            "CRAWLER_MIN_DELAY_S": "0",
            "CRAWLER_BACKOFF_MAX_S": "2",
            "CRAWLER_MAX_RETRY_AFTER_S": "2",
            "CRAWLER_REQUEST_DEADLINE_S": "10",
        }
        child_env.pop("CRAWLER_SITES", None)
        logs = root / ".stack" / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with (logs / "crawler-once.log").open("ab") as out:
            done = subprocess.run(  # our interpreter and the crawler module
                [sys.executable, "-m", "crawler", "--once"],
                cwd=root,
                env=child_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout_s,
                check=False,
            )
    return done.returncode


# --- counting ---------------------------------------------------------------------------


def _in(values: list[str]) -> str:
    return "(" + ", ".join(sql_literal(v) for v in values) + ")" if values else "('')"


def archive_counts(engine: QueryEngine, report: DemoReport) -> dict[str, int]:
    """This run's rows in the archive, per kind."""
    sc = report.scenario
    ids = _in(report.app_ids())
    start = sc.candle_minutes[0].isoformat()
    end = (sc.candle_minutes[-1] + timedelta(minutes=1)).isoformat()
    symbols = _in(list(sc.symbols))
    burst = burst_subjects_sql(sc.burst_sku)
    sql = f"""
SELECT
 (SELECT count(DISTINCT review_id) FROM reviews_enriched WHERE review_id IN {ids}),
 (SELECT count(DISTINCT review_id) FROM reviews_enriched
   WHERE review_id IN {ids} AND op = 'delete'),
 (SELECT count(*) FROM ({archived_crawls_sql(report.crawled_ids)})),
 (SELECT count(*) FROM reviews_latest WHERE review_id IN {ids}),
 (SELECT count(DISTINCT symbol || '@' || CAST(window_start AS VARCHAR)) FROM market_candles
   WHERE symbol IN {symbols} AND window_start >= TIMESTAMPTZ '{start}'
     AND window_start < TIMESTAMPTZ '{end}'),
 (SELECT count(DISTINCT alert_id) FROM alerts
   WHERE kind = 'negative_burst' AND subject IN {burst}),
 (SELECT count(DISTINCT alert_id) FROM alerts
   WHERE kind = 'price_move' AND subject = {sql_literal(sc.equity)}),
 (SELECT count(DISTINCT alert_id) FROM alerts
   WHERE kind = 'negative_review' AND subject IN {burst})
"""  # noqa: S608  # literals quoted by sql_literal; ids come from the API
    row = engine.run(sql).rows[0]
    keys = ("reviews", "deletes", "crawled", "latest", "candles", "bursts", "moves", "negatives")
    return dict(zip(keys, (int(v or 0) for v in row), strict=True))


def external_ids(crawled_ids: set[str]) -> set[str]:
    """`<id>` of each crawled record key `<site>:<id>`."""
    return {key.split(":", 1)[1] for key in crawled_ids}


def crawled_on(site: str) -> Callable[[bytes | None, bytes | None], str | None]:
    """A scan's `keep` for the crawler's records from `site`: their keys."""
    prefix = f"{site}:"

    def keep(key: bytes | None, _: bytes | None) -> str | None:
        text = (key or b"").decode(errors="replace")
        return text if text.startswith(prefix) else None

    return keep


def archived_crawls_sql(crawled_ids: set[str], *, other_than: str | None = None) -> str:
    """The external ids (`:<id>`) of `crawled_ids` (`<site>:<id>`) archived under any demo
    run's site name, or any but `other_than`'s. The processor deduplicates crawled reviews by
    content, so on a re-run the sample site's reviews are already archived under the first
    run's site name."""
    externals = sorted(external_ids(crawled_ids))
    ext_values = ", ".join(f"({sql_literal(':' + e)})" for e in externals) or "('')"
    other = (
        ""
        if other_than is None
        else f" AND NOT starts_with(r.review_id, {sql_literal(f'crawl:{other_than}:')})"
    )
    return f"""SELECT DISTINCT e.x FROM (VALUES {ext_values}) AS e(x)
   WHERE EXISTS (SELECT 1 FROM reviews_enriched r
                 WHERE r.review_id LIKE 'crawl:demo-%' AND suffix(r.review_id, e.x){other})"""  # noqa: S608


def burst_subjects_sql(sku: str) -> str:
    """The alert subjects of one product: its SKU, or `product:<id>` when the processor saw
    the review before the product row (the contract allows either)."""
    literal = sql_literal(sku)  # quoted: the guard and DuckDB see one literal
    ids = "'product:' || CAST(product_id AS VARCHAR)"
    where = f"product_sku = {literal} AND product_id IS NOT NULL"
    return f"(SELECT {literal} UNION SELECT DISTINCT {ids} FROM reviews_enriched WHERE {where})"  # noqa: S608


def pii_hits(engine: QueryEngine, report: DemoReport) -> int:
    """Rows of this run whose text still holds an email or phone number that was sent."""
    strings = list(report.scenario.pii_strings)
    values = ", ".join(f"({sql_literal(s)})" for s in strings)
    sql = f"""
SELECT count(*) FROM reviews_enriched r, (VALUES {values}) AS p(s)
WHERE r.review_id IN {_in(report.app_ids())}
  AND strpos(coalesce(r.title, '') || ' ' || coalesce(r.body, '') || ' '
             || coalesce(r.author_pseudonym, ''), p.s) > 0"""  # noqa: S608  # quoted literals
    return int(engine.run(sql).rows[0][0])


async def scan_since(
    bootstrap: str,
    topic: str,
    keep: Callable[[bytes | None, bytes | None], str | None],
    *,
    since: datetime,
    failures: list[str],
) -> set[str]:
    """`kafka_scan.scan` from `since` (less a few seconds of clock slack); a scan cut off by
    its deadline keeps what it found and is reported among the run's failures."""
    since_ms = int((since - SCAN_SLACK).timestamp() * 1000)
    try:
        return await kafka_scan.scan(bootstrap, topic, keep, since_ms=since_ms)
    except kafka_scan.ScanIncompleteError as exc:
        failures.append(str(exc))
        return exc.found


async def topic_counts(bootstrap: str, report: DemoReport) -> dict[str, Any]:
    """This run's records on the CDC and enriched topics (distinct ids)."""
    ours = set(report.api.review_ids.values())

    def cdc_review(key: bytes | None, _: bytes | None) -> str | None:
        try:
            rid = str(orjson.loads(key or b"{}").get("id"))
        except (orjson.JSONDecodeError, AttributeError):
            return None
        return rid if rid in ours else None

    def enriched(key: bytes | None, _: bytes | None) -> str | None:
        text = (key or b"").decode(errors="replace")
        return text if text in ours or text.startswith("crawl:demo-") else None

    scan = functools.partial(
        scan_since, bootstrap, since=report.started, failures=report.api.failures
    )
    cdc, out = await asyncio.gather(
        scan(topics.REVIEWS_CDC.name, cdc_review), scan(topics.REVIEWS_ENRICHED.name, enriched)
    )
    return {
        "cdc": len(cdc),
        "enriched_app": len([k for k in out if k in ours]),
        # External ids of crawled reviews enriched since the run started, under any demo run's
        # site name (deduplicated by content across runs).
        "enriched_crawl": {
            k.split(":", 2)[2] for k in out if k.startswith("crawl:demo-") and k.count(":") >= 2
        },
    }


@dataclass(slots=True)
class FeedTally:
    """What market_feeds published on market.trades.v1 for the simulator's symbols."""

    venues: set[str] = field(default_factory=set)
    trades: int = 0
    duplicates: int = 0  # records whose event_id (venue, symbol, trade id) came before


def tally_trades(values: list[bytes | None], *, symbol_prefix: str = "SIM-") -> FeedTally:
    """Count trades per venue and trades published twice (same event_id). Pure."""
    tally = FeedTally()
    seen: set[str] = set()
    for value in values:
        try:
            trade = orjson.loads(value or b"{}")
        except orjson.JSONDecodeError:
            continue
        if not isinstance(trade, dict) or not str(trade.get("symbol", "")).startswith(
            symbol_prefix
        ):
            continue
        event_id = str(trade.get("event_id"))
        tally.trades += 1
        tally.duplicates += event_id in seen
        seen.add(event_id)
        tally.venues.add(str(trade.get("venue")))
    return tally


async def feed_tally(bootstrap: str, report: DemoReport) -> FeedTally:
    """market.trades.v1 since the run started (the simulator streams while `pulse up` runs)."""
    values: list[bytes | None] = []

    def keep(_key: bytes | None, value: bytes | None) -> str | None:
        values.append(value)
        return None

    await scan_since(
        bootstrap,
        topics.MARKET_TRADES.name,
        keep,
        since=report.started,
        failures=report.api.failures,
    )
    return tally_trades(values)


def make_engine(env: dict[str, str]) -> QueryEngine:
    values = {k.lower(): v for k, v in env.items() if k.lower() in ArchiveSettings.model_fields}
    archive = ArchiveSettings.model_validate(values)
    engine = build_engine(QuerySettings(), archive)
    engine.max_sql_chars = 1_000_000  # the demo's own checks list every id of the run
    return engine


# --- the flow ---------------------------------------------------------------------------


def wait_for_backlog(
    env: dict[str, str], *, console: Console, max_lag: int = BACKLOG_MAX, timeout_s: float = 420.0
) -> int | None:
    """Wait until the stream processor's consumer lag is below `max_lag` (or the timeout).

    The stack is shared: a backlog someone else queued (a benchmark) delays this run's
    records behind it, which would read as loss. Returns the last lag seen.
    """
    bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:59092")
    deadline = time.monotonic() + timeout_s
    lag = asyncio.run(kafka_scan.group_lag(bootstrap, PROCESSOR_GROUP))
    if lag is None or lag <= max_lag:
        return lag
    console.print(
        f"[yellow]cdc_processor is {lag} records behind; waiting for it to drain "
        f"below {max_lag} (at most {timeout_s:.0f} s)…[/yellow]"
    )
    while lag is not None and lag > max_lag and time.monotonic() < deadline:
        time.sleep(5.0)
        lag = asyncio.run(kafka_scan.group_lag(bootstrap, PROCESSOR_GROUP))
    return lag


NOTIFY_WAIT_S = 30.0  # after the archive has the alerts: group_wait (2 s) plus retries


def run_demo(
    root: Path,
    env: dict[str, str],
    *,
    console: Console,
    scale: float = 1.0,
    timeout_s: float = 240.0,
    show_insights: bool = True,
) -> DemoReport:
    """The demo, with the notifier's local receivers listening for the whole run."""
    with contextlib.ExitStack() as exits:
        receivers: demo_receivers.Receivers | None = None
        try:
            receivers = exits.enter_context(demo_receivers.local_receivers(root))
        except OSError as exc:  # a port taken (another demo?): the notifier stages say so
            console.print(f"[yellow]local receivers not started: {exc}[/yellow]")
        return _run_demo(
            root,
            env,
            console=console,
            scale=scale,
            timeout_s=timeout_s,
            show_insights=show_insights,
            receivers=receivers,
        )


def notifier_stages(
    receivers: demo_receivers.Receivers | None, sc: scenario.Scenario, *, wait_s: float
) -> tuple[list[Stage], list[str]]:
    """What the notifier delivered for this run: the burst and the price move as signed
    webhooks, and at least one email; single negative reviews of the burst's product are
    held back by inhibition while the burst lasts."""
    skus = {p.sku for p in sc.products}
    notified = demo_receivers.Notified([], 0, 0, [])
    deadline = time.monotonic() + wait_s
    while receivers is not None:
        notified = demo_receivers.for_run(
            list(receivers.webhook.received),
            list(receivers.smtp.mails),
            skus=skus,
            equity=sc.equity,
        )
        done = notified.kinds("negative_burst") and notified.kinds("price_move") and notified.mails
        if done or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    note = "" if receivers is not None else "receivers not started"
    singles = len(notified.kinds("negative_review"))
    stages = [
        Stage(
            "notifier: burst by signed webhook",
            1,
            min(1, len(notified.kinds("negative_burst"))),
            note,
        ),
        Stage(
            "notifier: price move by signed webhook",
            1,
            min(1, len(notified.kinds("price_move"))),
            note,
        ),
        Stage(
            "notifier: webhook signatures valid",
            notified.webhook_notifications,
            notified.webhook_signed,
            f"{notified.webhook_notifications} notifications, {singles} single negative reviews",
        ),
        Stage(
            "notifier: email received (aiosmtpd)",
            1,
            min(1, len(notified.mails)),
            f"{len(notified.mails)} emails",
        ),
    ]
    return stages, demo_receivers.summary_lines(notified)


def _run_demo(
    root: Path,
    env: dict[str, str],
    *,
    console: Console,
    scale: float,
    timeout_s: float,
    show_insights: bool,
    receivers: demo_receivers.Receivers | None,
) -> DemoReport:
    run_id = uuid.uuid4().hex[:8]
    now = datetime.now(UTC)
    probe = demo_scenario(run_id, scale=scale, start=scenario.minute_floor(now))
    sc = demo_scenario(
        run_id, scale=scale, start=tick_start(root, minutes=len(probe.candle_minutes), now=now)
    )
    console.rule(f"[bold]Pulse demo, run {run_id}[/bold]")
    console.print(
        f"{len(sc.products)} products, {len(sc.reviews)} reviews "
        f"({len(sc.edits)} edits, {len(sc.deletes)} deletes, a burst of "
        f"{sum(r.negative for r in sc.reviews)} negative reviews on {sc.burst_sku}), "
        f"{len(sc.ticks)} ticks ({sc.equity} jumps ~8 % at "
        f"{sc.move_minute:%H:%M} UTC), {len(sc.bad_requests)} bad requests"
    )
    backlog = wait_for_backlog(env, console=console)
    api_url = env.get("PULSE_API_URL", "http://127.0.0.1:58000")
    engine = make_engine(env)
    with progress_bar(console) as progress:
        api = asyncio.run(
            drive_api(sc, api_url=api_url, api_key=env["PULSE_API_KEY"], progress=progress)
        )
        task = progress.add_task("crawler --once over the sample site", total=1)
        with fixture_site(root) as site:
            code = crawl_once(root, env, sc.crawl_site, site.origin)
        progress.advance(task)
    if code != 0:
        api.failures.append(f"crawler --once exited {code} (see .stack/logs/crawler-once.log)")
    bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:59092")
    crawled = asyncio.run(
        scan_since(
            bootstrap,
            topics.REVIEWS_CRAWLED.name,
            crawled_on(sc.crawl_site),
            since=now,
            failures=api.failures,
        )
    )
    report = DemoReport(
        run_id, sc, api, crawled, [], engine.catalog.location.display, 0.0, now, backlog
    )
    # Archived under an earlier run's site name: the processor enriches a review once, so this
    # run sends nothing new for those.
    prior_sql = archived_crawls_sql(crawled, other_than=sc.crawl_site)
    prior = {str(row[0])[1:] for row in engine.run(prior_sql).rows}

    expected = {
        "reviews": len(api.review_ids),
        "deletes": api.deletes_ok,
        "crawled": len(crawled),
        "latest": len(api.review_ids) - api.deletes_ok,
        "candles": len(sc.candle_minutes) * len(sc.symbols),
        "bursts": 1,
        "moves": 1,
        "negatives": sum(1 for r in sc.reviews if r.negative),
    }
    started = time.monotonic()
    counts: dict[str, int] = dict.fromkeys(expected, 0)
    with progress_bar(console) as progress:
        task = progress.add_task("waiting for the archive", total=sum(expected.values()))
        while time.monotonic() - started < timeout_s:
            try:
                counts = archive_counts(engine, report)
            except Exception as exc:  # the archive may be empty or mid-write; retry
                log.debug("archive not readable yet: %s", exc)
            progress.update(task, completed=sum(min(counts[k], v) for k, v in expected.items()))
            if all(counts[k] >= v for k, v in expected.items()):
                break
            time.sleep(3.0)
    report.waited_s = round(time.monotonic() - started, 1)
    topic = asyncio.run(topic_counts(bootstrap, report))
    feeds = asyncio.run(feed_tally(bootstrap, report))
    hits = pii_hits(engine, report)

    s = report.stages
    s.append(Stage("API: reviews accepted (201)", len(sc.reviews), len(api.review_ids)))
    s.append(Stage("API: edits accepted", len(sc.edits), api.edits_ok))
    s.append(Stage("API: deletes accepted", len(sc.deletes), api.deletes_ok))
    s.append(Stage("API: ticks accepted", len(sc.ticks), api.ticks_ok))
    refused = sum(1 for bad in sc.bad_requests if api.bad_refused.get(bad.why) == bad.status)
    s.append(
        Stage(
            "API: bad requests refused with their status",
            len(sc.bad_requests),
            refused,
            ", ".join(f"{k}={v}" for k, v in api.bad_refused.items()),
        )
    )
    s.append(Stage("CDC: reviews on pulse.public.reviews", len(api.review_ids), topic["cdc"]))
    s.append(
        Stage(
            "crawler: reviews published",
            max(1, len(crawled)),
            len(crawled),
            "at least one expected from the sample site",
        )
    )
    s.append(Stage("enriched: app reviews", len(api.review_ids), topic["enriched_app"]))
    fresh = external_ids(crawled) - prior
    s.append(
        Stage(
            "enriched: crawled reviews",
            len(fresh),
            len(fresh & topic["enriched_crawl"]),
            f"not counting {len(prior)} archived by an earlier run (deduplicated)" if prior else "",
        )
    )
    s.append(Stage("archive: app reviews", expected["reviews"], counts["reviews"]))
    s.append(Stage("archive: delete records", expected["deletes"], counts["deletes"]))
    s.append(Stage("archive: crawled reviews", expected["crawled"], counts["crawled"]))
    s.append(Stage("query: latest state (deletes hidden)", expected["latest"], counts["latest"]))
    s.append(Stage("archive: 1-minute candles", expected["candles"], counts["candles"]))
    s.append(Stage("alerts: negative burst", 1, counts["bursts"]))
    s.append(Stage("alerts: price move", 1, counts["moves"]))
    s.append(Stage("alerts: negative reviews", expected["negatives"], counts["negatives"]))
    s.append(Stage("archive: personal data found", 0, hits, "emails and phones sent"))
    s.append(
        Stage(
            "market_feeds: simulated exchanges streaming trades",
            len(DEMO_FEED_SYMBOLS),
            len(feeds.venues & set(DEMO_FEED_SYMBOLS)),
            f"{feeds.trades} trades on {topics.MARKET_TRADES.name}"
            f" ({', '.join(sorted(feeds.venues))})",
        )
    )
    s.append(Stage("market_feeds: trades published twice", 0, feeds.duplicates))
    notified, lines = notifier_stages(receivers, sc, wait_s=NOTIFY_WAIT_S)
    s.extend(notified)
    s.append(dashboard_stage(root, api_url, sc.symbols, console=console))
    s.extend(quality_stages(env, console=console, now=datetime.now(UTC)))

    if show_insights:
        print_insights(console, engine, equity=sc.equity)
    if lines:
        console.print("\n[bold]What the notifier's local receivers got[/bold]")
        for line in lines:
            console.print(f"  {line}")
    console.print(
        f"\nArchive: [bold]{report.archive_location}/<dataset>/dt=…/hour=…/*.parquet[/bold]"
        f"  (S3 endpoint {env.get('S3_ENDPOINT_URL', 'AWS')}); logs in .stack/logs/"
    )
    print_summary(console, report)
    return report


DASHBOARD_DIRECT_URL = "http://127.0.0.1:58003"


def dashboard_symbols(base_url: str, key: str) -> set[str]:
    """The symbols in the dashboard's markets snapshot at `base_url` (nginx or direct)."""
    r = httpx.get(
        f"{base_url}{processes.DASHBOARD_URL_PATH}api/snapshot",
        params={"views": "markets"},
        headers={"X-API-Key": key},
        timeout=5,
    )
    r.raise_for_status()
    return set(r.json().get("markets", {}))


def dashboard_stage(
    root: Path,
    api_url: str,
    symbols: tuple[str, ...],
    *,
    console: Console,
    wait_s: float = 20.0,
) -> Stage:
    """The dashboard's snapshot holds every demo symbol; prints where to open it. Through
    nginx first; a stack nginx started before /dashboard/ existed answers 404, so the direct
    port is tried next (the stage's note says which)."""
    key = processes.dashboard_viewer_key(root)
    page = f"{api_url}{processes.DASHBOARD_URL_PATH}"
    seen: set[str] = set()
    note = f"via {page}"
    deadline = time.monotonic() + wait_s
    while True:
        for base in (api_url, DASHBOARD_DIRECT_URL):
            try:
                seen = dashboard_symbols(base, key)
                note = f"via {base}{processes.DASHBOARD_URL_PATH}"
                break
            except (httpx.HTTPError, ValueError) as exc:
                note = f"{base}: {exc}"
        if set(symbols) <= seen or time.monotonic() > deadline:
            break
        time.sleep(2.0)
    console.print(
        f"\nDashboard: [bold]{page}[/bold] (viewer key in .stack/secrets/dashboard_viewer_key)"
    )
    return Stage(
        "dashboard: demo symbols in its snapshot", len(symbols), len(seen & set(symbols)), note
    )


def quality_stages(
    env: dict[str, str],
    *,
    console: Console,
    now: datetime,
    settings: QualitySettings | None = None,
) -> list[Stage]:
    """`pulse check` and `pulse report` over the demo's archive, in this process: every
    declared check evaluated (its PASS/FAIL line printed), both daily digests rendered and
    archived. Nothing is published: the scheduled runs (`pulse up`, the CronJobs) publish
    results and alerts; the demo shows them. The stage counts checks evaluated, not passed:
    the stack's archive is shared and long-lived (earlier runs' symbols go stale, replays
    archive duplicates), and a failed check is a finding to show, not a lost record."""
    # Soda Core's import takes seconds: paid only when this stage runs.
    from quality import checkfile
    from quality import main as quality_main

    values = {k.lower(): v for k, v in env.items() if k.lower() in ArchiveSettings.model_fields}
    archive = ArchiveSettings.model_validate(values)
    settings = settings or QualitySettings(publish=False)
    console.print("\n[bold]Data quality over the archive (pulse check)[/bold]")
    declared = sum(f.check_count for f in checkfile.load_dir(settings.checks_dir))
    lines: list[str] = []
    try:
        quality_main.check(settings, archive, None, now=now, echo=lines.append)
    except Exception as exc:  # the stage says what broke; the other stages stand
        lines.append(f"ERROR {exc}")
    results = [line for line in lines if line.startswith(("PASS ", "FAIL "))]
    evaluated = [line for line in results if ".contract " not in line]
    failed = [line.split()[1].split("[")[0] for line in results if line.startswith("FAIL ")]
    colours = {"PASS": "green", "FAIL": "red", "ERRO": "red"}
    for line in lines:  # as Text: a line's `[low]` or `['buy', …]` is not markup
        console.print(Text(f"  {line}", style=colours.get(line[:4], "bold")))
    failed_note = f": {', '.join(failed[:6])}{'…' if len(failed) > 6 else ''}" if failed else ""
    check_stage = Stage(
        "quality: checks evaluated over the archive",
        declared,
        len(evaluated),
        f"{len(results) - len(failed)} passed, {len(failed)} failed{failed_note}",
    )
    digest_lines: list[str] = []
    try:
        quality_main.report(settings, archive, None, now=now, echo=digest_lines.append)
    except Exception as exc:
        digest_lines.append(f"ERROR {exc}")
    archived = [line for line in digest_lines if line.startswith("archived ")]
    console.print("\n[bold]Daily digests (pulse report)[/bold]")
    for line in archived + [line for line in digest_lines if line.startswith("ERROR ")]:
        console.print(Text(f"  {line}"))
    digest_stage = Stage(
        "quality: daily digests rendered and archived",
        2,
        len(archived),
        "customer team and market desk: HTML, chat text, figures",
    )
    return [check_stage, digest_stage]


def print_insights(console: Console, engine: QueryEngine, *, equity: str | None) -> None:
    for insight in insights.all_insights(equity=equity):
        try:
            result = engine.run(insight.sql, max_rows=20)
        except Exception as exc:  # one failing insight should not hide the others
            console.print(f"[red]{insight.title}: {exc}[/red]")
            continue
        console.print(result_table(insight.title, result.columns, result.rows))


def print_summary(console: Console, report: DemoReport) -> None:
    table = Table(
        title=f"Run {report.run_id}: in vs out (waited {report.waited_s} s)",
        title_justify="left",
        header_style="bold cyan",
    )
    for column in ("stage", "expected", "actual", "", "note"):
        table.add_column(column)
    for stage in report.stages:
        mark = "[green]PASS[/green]" if stage.ok else "[red]FAIL[/red]"
        table.add_row(stage.name, str(stage.expected), str(stage.actual), mark, stage.note)
    console.print(table)
    for failure in report.api.failures[:20]:
        console.print(f"[red]  {failure}[/red]")
    if not report.passed and (report.backlog or 0) > BACKLOG_MAX:
        console.print(
            f"[yellow]cdc_processor was {report.backlog} records behind when this run started "
            "sending: its records queued behind that backlog, so the later stages may not have "
            "seen them yet. `pulse status` shows the lag; run the demo again once it is small."
            "[/yellow]"
        )
    verdict = "[bold green]PASS[/bold green]" if report.passed else "[bold red]FAIL[/bold red]"
    console.print(f"Demo {verdict}: nothing lost" if report.passed else f"Demo {verdict}")
