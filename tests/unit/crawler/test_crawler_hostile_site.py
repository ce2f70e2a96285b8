"""The crawler against a hostile site on a real loopback server: broken structured data, slow
bodies, stalls, refused connections, and robots.txt asked for by a site and a feed at once."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from contracts.events import ReviewCrawled
from crawler.addresses import IPAddress
from crawler.app import CrawlerApp, build_policy
from crawler.extraction import BrokenBlock, extract_page
from crawler.fetcher import Fetcher, FetchError
from crawler.publisher import MemoryPublisher
from crawler.robots import RobotsCache
from crawler_testkit import FIXTURE_DIR, make_settings
from hostile_site import BROKEN_STRUCTURED_PAGE, HostileSite, free_port_in_range
from servicekit import metrics
from servicekit.clock import SystemClock


@pytest.fixture
def hostile() -> Iterator[HostileSite]:
    with HostileSite() as running:
        yield running


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def make_fetcher(tmp_path: Path, **overrides: Any) -> Fetcher:
    return Fetcher(policy=build_policy(make_settings(tmp_path, **overrides)), clock=SystemClock())


async def failed_fetch(fetcher: Fetcher, url: str) -> tuple[FetchError, float]:
    """The FetchError that `url` ends with, and the seconds the whole fetch took."""
    started = time.monotonic()
    try:
        with pytest.raises(FetchError) as caught:
            await fetcher.fetch(url, delay_s=0)
    finally:
        await fetcher.aclose()
    return caught.value, time.monotonic() - started


def site(hostile: HostileSite, name: str, *paths: str) -> dict[str, Any]:
    return {
        "name": name,
        "start_urls": [f"{hostile.origin}{p}" for p in paths],
        "allowed_patterns": [r"\.html$"],
        "product": {"sku_is_ours": True},
    }


# --- 1. every structured-data block on its own ----------------------------------------------


def test_one_broken_json_ld_block_keeps_the_valid_blocks_beside_it() -> None:
    page = extract_page(BROKEN_STRUCTURED_PAGE, "http://reviews.example/kettle")
    assert [(r.body, r.via) for r in page.reviews] == [
        ("First, valid.", "json-ld"),
        ("Third, valid.", "json-ld"),
        ("Microdata, valid.", "microdata"),
    ]
    assert [(b.syntax, b.index) for b in page.broken] == [("json-ld", 2), ("microdata", 1)]
    assert all(isinstance(b, BrokenBlock) and b.error for b in page.broken)


def test_a_page_whose_blocks_all_parse_reports_none_broken() -> None:
    html = (FIXTURE_DIR / "pages" / "products" / "ktl-100.html").read_text(encoding="utf-8")
    page = extract_page(html, "http://homegear.example/products/ktl-100.html")
    assert page.reviews and page.broken == []


def test_an_unparsable_link_does_not_lose_the_page() -> None:
    html = '<html><body><a href="http://[broken">x</a><a href="/next.html">n</a></body></html>'
    assert extract_page(html, "http://reviews.example/").links == [
        "http://reviews.example/next.html"
    ]


async def test_crawl_counts_and_logs_broken_blocks_by_site(
    hostile: HostileSite, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    name = f"hostile-{uuid.uuid4().hex[:8]}"
    publisher = MemoryPublisher()
    app = CrawlerApp(
        make_settings(tmp_path, sites=(site(hostile, name, "/broken-structured.html"),)),
        publisher=publisher,
        clock=SystemClock(),
    )
    caplog.set_level(logging.WARNING, logger="crawler.crawl")
    try:
        report = await app.sites[0].crawl_once()
    finally:
        await app.aclose()
    assert report.broken_blocks == 2
    metric = "pulse_crawler_structured_data_errors_total"
    assert sample(metric, site=name, syntax="json-ld") == 1
    assert sample(metric, site=name, syntax="microdata") == 1
    published = [e for _, e in publisher.records["reviews.crawled.v1"]]
    assert sorted(e.body for e in published if isinstance(e, ReviewCrawled)) == [
        "First, valid.",
        "Microdata, valid.",
        "Third, valid.",
    ]
    # The page states 1.8 on 0–10: carried exactly, with the scale, as decimal strings.
    first = next(e for e in published if isinstance(e, ReviewCrawled) and e.external_id == "r-a")
    assert first.rating_exact == Decimal("1.72") and first.rating == 1.72
    wire = first.model_dump(mode="json")
    assert (wire["rating_exact"], wire["rating_source_value"]) == ("1.72", "1.8")
    assert (wire["rating_source_worst"], wire["rating_source_best"]) == ("0", "10")
    lines = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(lines) == 2 and "json-ld block 2" in lines[0] and "broken-structured" in lines[0]


# --- 2. slow pages: a budget per URL, no retry of a trickle --------------------------------


async def test_a_trickling_body_is_given_up_at_the_minimum_rate_and_not_retried(
    hostile: HostileSite, tmp_path: Path
) -> None:
    fetcher = make_fetcher(
        tmp_path,
        request_deadline_s=2.0,
        url_budget_s=3.0,
        max_retries=3,
        trickle_grace_s=0.5,
        min_body_bytes_per_s=200.0,  # the drip sends 20 B/s
    )
    error, elapsed = await failed_fetch(fetcher, f"{hostile.origin}/drip.html")
    assert error.reason == "trickle"
    assert hostile.hits("/drip.html") == 1  # four attempts before
    assert elapsed < 1.5  # the grace period and a chunk, not the 2 s deadline


async def test_a_body_still_arriving_at_the_deadline_is_not_retried(
    hostile: HostileSite, tmp_path: Path
) -> None:
    budget_s = 5.0
    fetcher = make_fetcher(
        tmp_path,
        request_deadline_s=1.0,
        url_budget_s=budget_s,
        max_retries=3,
        min_body_bytes_per_s=0.0,  # no rate floor: only the deadline ends it
    )
    error, elapsed = await failed_fetch(fetcher, f"{hostile.origin}/drip.html")
    assert error.reason == "trickle"
    assert hostile.hits("/drip.html") == 1
    assert 0.9 < elapsed < 1.6  # one deadline, where retries made it four


async def test_a_stalled_url_is_retried_only_within_its_budget(
    hostile: HostileSite, tmp_path: Path
) -> None:
    budget_s = 1.5
    fetcher = make_fetcher(tmp_path, request_deadline_s=0.6, url_budget_s=budget_s, max_retries=10)
    error, elapsed = await failed_fetch(fetcher, f"{hostile.origin}/stall.html")
    assert error.reason == "budget"
    assert "CRAWLER_URL_BUDGET_S" in str(error)
    assert hostile.hits("/stall.html") >= 2  # a stall (no body yet) is still retried…
    assert elapsed < budget_s + 0.3  # …but never past the URL's budget (11 deadlines before)


async def test_waiting_for_the_hosts_turn_does_not_spend_the_budget(
    hostile: HostileSite, tmp_path: Path
) -> None:
    fetcher = make_fetcher(tmp_path, url_budget_s=0.5)
    try:
        first = await fetcher.fetch(f"{hostile.origin}/quotes.json", delay_s=1.0)
        started = time.monotonic()
        # A Crawl-delay (here 1 s) longer than the budget: the URL waits its turn, then runs.
        second = await fetcher.fetch(f"{hostile.origin}/quotes.json", delay_s=1.0)
        waited = time.monotonic() - started
    finally:
        await fetcher.aclose()
    assert first.ok and second.ok
    assert waited >= 0.9


async def test_a_connect_failure_is_still_retried(tmp_path: Path) -> None:
    port = free_port_in_range()  # nothing listens: the kernel refuses every connect
    connects = 0

    async def resolver(host: str, port: int) -> list[IPAddress]:
        nonlocal connects
        connects += 1  # GuardedBackend resolves once per connection attempt
        return [ipaddress.ip_address("127.0.0.1")]

    fetcher = Fetcher(
        policy=build_policy(make_settings(tmp_path, max_retries=2, url_budget_s=10.0)),
        clock=SystemClock(),
        resolver=resolver,
    )
    error, _ = await failed_fetch(fetcher, f"http://refused.test:{port}/")
    assert error.reason == "connect"
    assert connects == 3


async def test_crawl_records_a_slow_page(
    hostile: HostileSite, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    name = f"slow-{uuid.uuid4().hex[:8]}"
    app = CrawlerApp(
        make_settings(
            tmp_path,
            sites=(site(hostile, name, "/drip.html", "/broken-structured.html"),),
            trickle_grace_s=0.3,
            min_body_bytes_per_s=200.0,
        ),
        publisher=MemoryPublisher(),
        clock=SystemClock(),
    )
    caplog.set_level(logging.INFO, logger="crawler.crawl")
    try:
        await app.run_once()
    finally:
        await app.aclose()
    report = app.last_reports[name]
    assert report.slow == [f"{hostile.origin}/drip.html"]
    assert app.summary().endswith(f"{name}: 1 pages, 1 slow, 2 broken blocks")
    assert report.errors == {"trickle": 1}
    assert report.extracted == 3  # the other page was still crawled
    assert sample("pulse_crawler_slow_pages_total", site=name, reason="trickle") == 1
    messages = [r.getMessage() for r in caplog.records]
    assert any("slow page given up" in m and "drip.html" in m for m in messages)
    assert any("1 slow pages" in m for m in messages)


# --- 3. robots.txt: one fetch per origin in flight ----------------------------------------


async def test_pages_and_feed_asking_at_once_fetch_robots_once(
    hostile: HostileSite, tmp_path: Path
) -> None:
    name = f"both-{uuid.uuid4().hex[:8]}"
    feed = {
        "name": f"{name}-feed",
        "url": f"{hostile.origin}/quotes.json",
        "asset_class": "equity",
    }
    publisher = MemoryPublisher()
    app = CrawlerApp(
        make_settings(
            tmp_path, sites=(site(hostile, name, "/broken-structured.html"),), quote_feeds=(feed,)
        ),
        publisher=publisher,
        clock=SystemClock(),
    )
    try:
        await app.run_once()
    finally:
        await app.aclose()
    assert hostile.hits("/robots.txt") == 1
    assert hostile.hits("/quotes.json") == 1 and hostile.hits("/broken-structured.html") == 1
    assert len(publisher.records["market.quotes.v1"]) == 1
    assert app.summary() == f"1 sites, 1 feeds; {name}: 1 pages, 0 slow, 2 broken blocks"


async def test_concurrent_askers_share_one_robots_fetch(
    hostile: HostileSite, tmp_path: Path
) -> None:
    fetcher = make_fetcher(tmp_path)
    robots = RobotsCache(fetcher=fetcher, clock=SystemClock(), agent="PulseCrawler", cache_s=60)
    before = sample("pulse_crawler_robots_fetches_total", origin=hostile.origin)
    try:
        answers = await asyncio.gather(
            *(robots.allowed(f"{hostile.origin}/p{n}.html", delay_s=0) for n in range(8))
        )
        again = await robots.allowed(f"{hostile.origin}/later.html", delay_s=0)  # cached
    finally:
        await robots.aclose()
        await fetcher.aclose()
    assert answers == [(True, None)] * 8 and again == (True, None)
    assert hostile.hits("/robots.txt") == 1
    assert sample("pulse_crawler_robots_fetches_total", origin=hostile.origin) - before == 1


async def test_a_cancelled_asker_leaves_the_shared_robots_fetch_running(
    hostile: HostileSite, tmp_path: Path
) -> None:
    fetcher = make_fetcher(tmp_path)
    robots = RobotsCache(fetcher=fetcher, clock=SystemClock(), agent="PulseCrawler", cache_s=60)
    try:
        first = asyncio.create_task(robots.allowed(f"{hostile.origin}/a.html", delay_s=0))
        second = asyncio.create_task(robots.allowed(f"{hostile.origin}/b.html", delay_s=0))
        await asyncio.sleep(0.05)  # both wait on the one fetch (robots.txt answers in 0.3 s)
        first.cancel()
        assert await second == (True, None)
        with pytest.raises(asyncio.CancelledError):
            await first
    finally:
        await robots.aclose()
        await fetcher.aclose()
    assert hostile.hits("/robots.txt") == 1
