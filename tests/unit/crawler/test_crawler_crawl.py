"""Whole crawls of the fixture site through the real fetcher, publishing to memory."""

from __future__ import annotations

import itertools
from decimal import Decimal
from pathlib import Path
from typing import Any

from contracts.events import QuotePolled, ReviewCrawled
from crawler.app import CrawlerApp
from crawler.publisher import MemoryPublisher
from crawler_fixture_site import FixtureSite, feed_config, site_config
from crawler_testkit import make_settings
from servicekit.clock import SystemClock


async def crawl(tmp_path: Path, publisher: MemoryPublisher, **settings: Any) -> CrawlerApp:
    app = CrawlerApp(make_settings(tmp_path, **settings), publisher=publisher, clock=SystemClock())
    try:
        await app.run_once()
    finally:
        await app.aclose()
    return app


def reviews(publisher: MemoryPublisher) -> list[ReviewCrawled]:
    events = [e for _, e in publisher.records.get("reviews.crawled.v1", [])]
    assert all(isinstance(e, ReviewCrawled) for e in events)
    return events  # type: ignore[return-value]


async def test_crawl_publishes_reviews_of_every_syntax_mapped_to_our_skus(
    site: FixtureSite, tmp_path: Path
) -> None:
    publisher = MemoryPublisher()
    await crawl(tmp_path, publisher, sites=(site_config(site.origin),))
    events = reviews(publisher)
    by_sku: dict[str | None, int] = {}
    for event in events:
        by_sku[event.product_sku] = by_sku.get(event.product_sku, 0) + 1
    assert by_sku == {
        "KTL-100": 5,
        "TST-200": 2,
        "BLN-300": 1,
        "GRL-400": 2,
        "MXR-500": 2,
        "CFM-600": 1,
    }
    keys = [k for k, _ in publisher.records["reviews.crawled.v1"]]
    assert len(set(keys)) == len(keys) == 13
    assert "homegear:https://homegear.example/reviews/r-1001" in keys
    kettle = next(e for e in events if e.external_id.endswith("r-1005"))
    assert kettle.url == f"{site.origin}/products/ktl-100.html?page=3"
    assert kettle.source == "homegear" and kettle.rating == 2.0
    french = next(e for e in events if e.external_id == "fr-501")
    assert french.title == "Très bien" and french.language == "fr"
    # robots.txt disallows /private/: linked from the index, never fetched.
    paths = site.paths()
    assert "/private/drafts.html" not in paths
    assert paths.count("/products/ktl-100.html?page=2") == 1  # the pagination loop ended
    assert paths[0] == "/robots.txt" and paths.count("/robots.txt") == 1
    assert not any("utm_source" in p for p in paths)  # sitemap URL equals it after normalising


async def test_second_crawl_publishes_only_what_is_new(site: FixtureSite, tmp_path: Path) -> None:
    config = site_config(site.origin)
    first = MemoryPublisher()
    await crawl(tmp_path, first, sites=(config,))
    assert len(reviews(first)) == 13
    again = MemoryPublisher()
    await crawl(tmp_path, again, sites=(config,))  # a new process: state from the file
    assert reviews(again) == []
    site.state.with_new_review = True
    third = MemoryPublisher()
    await crawl(tmp_path, third, sites=(config,))
    assert [e.external_id for e in reviews(third)] == ["https://homegear.example/reviews/r-1006"]


async def test_crawl_delay_from_robots_is_honoured(tmp_path: Path) -> None:
    with FixtureSite(crawl_delay_s=0.25) as slow:
        config = site_config(
            slow.origin,
            sitemaps=[],
            start_urls=[
                f"{slow.origin}/products/tst-200.html",
                f"{slow.origin}/products/bln-300.html",
                f"{slow.origin}/products/grl-400.html",
            ],
        )
        await crawl(tmp_path, MemoryPublisher(), sites=(config,))
        times = [t for p, t, _ in slow.state.requests]
    assert len(times) == 4
    assert all(b - a >= 0.24 for a, b in itertools.pairwise(times))


async def test_robots_500_disallows_the_whole_host(tmp_path: Path) -> None:
    with FixtureSite(mode="robots500") as broken:
        publisher = MemoryPublisher()
        await crawl(
            tmp_path, publisher, sites=(site_config(broken.origin, name="broken"),), max_retries=1
        )
        assert set(broken.paths()) == {"/robots.txt"}
    assert reviews(publisher) == []


async def test_page_budget_limits_a_crawl(site: FixtureSite, tmp_path: Path) -> None:
    await crawl(tmp_path, MemoryPublisher(), sites=(site_config(site.origin, max_pages=2),))
    pages = [p for p in site.paths() if p.startswith(("/products/", "/index"))]
    assert len(pages) == 2


async def test_quote_feed_publishes_exact_decimals_keyed_by_symbol(
    site: FixtureSite, tmp_path: Path
) -> None:
    publisher = MemoryPublisher()
    await crawl(tmp_path, publisher, quote_feeds=(feed_config(site.origin),))
    records = publisher.records["market.quotes.v1"]
    assert [k for k, _ in records] == ["ACME", "BTC-USD", "ETH-USD"]
    btc = records[1][1]
    assert isinstance(btc, QuotePolled)
    assert btc.price == Decimal("67012.123456789012345678")
    assert btc.model_dump(mode="json")["price"] == "67012.123456789012345678"
