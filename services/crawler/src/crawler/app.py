"""Composition root: reads settings, builds the fetcher, robots cache, state and publisher,
then runs every site and feed on its own schedule (or each once, for a CronJob)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from servicekit import metrics
from servicekit.clock import Clock, SystemClock
from servicekit.health import HealthServer
from servicekit.settings import KafkaSettings

from crawler.crawl import CrawlReport, FeedPoller, SiteCrawler
from crawler.fetcher import Fetcher, FetchPolicy, Resolver, system_resolver
from crawler.publisher import KafkaPublisher, Publisher
from crawler.robots import RobotsCache
from crawler.settings import CrawlerSettings
from crawler.watermark import StateStore

log = logging.getLogger(__name__)


def build_policy(settings: CrawlerSettings) -> FetchPolicy:
    return FetchPolicy(
        user_agent=settings.user_agent,
        request_deadline_s=settings.request_deadline_s,
        url_budget_s=settings.url_budget_s,
        min_body_bytes_per_s=settings.min_body_bytes_per_s,
        trickle_grace_s=settings.trickle_grace_s,
        connect_timeout_s=settings.connect_timeout_s,
        max_retries=settings.max_retries,
        backoff_base_s=settings.backoff_base_s,
        backoff_max_s=settings.backoff_max_s,
        max_retry_after_s=settings.max_retry_after_s,
        max_redirects=settings.max_redirects,
        max_body_bytes=settings.max_body_bytes,
        content_types=settings.content_types,
        global_concurrency=settings.global_concurrency,
        per_host_concurrency=settings.per_host_concurrency,
        allow=settings.allowed_networks,
    )


class CrawlerApp:
    """Every configured site and feed, sharing one fetcher (one politeness gate) and cache."""

    def __init__(
        self,
        settings: CrawlerSettings,
        *,
        publisher: Publisher,
        clock: Clock,
        resolver: Resolver = system_resolver,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.fetcher = Fetcher(policy=build_policy(settings), clock=clock, resolver=resolver)
        self.robots = RobotsCache(
            fetcher=self.fetcher,
            clock=clock,
            agent=settings.robots_agent,
            cache_s=settings.robots_cache_s,
        )
        state = StateStore(settings.state_dir)
        self.sites = [
            SiteCrawler(
                site,
                fetcher=self.fetcher,
                robots=self.robots,
                state=state,
                publisher=publisher,
                clock=clock,
                reviews_topic=settings.reviews_topic,
                default_delay_s=settings.min_delay_s,
                seen_ids_per_product=settings.seen_ids_per_product,
                concurrency=min(settings.global_concurrency, settings.per_host_concurrency),
            )
            for site in settings.site_list
        ]
        self.feeds = [
            FeedPoller(
                feed,
                fetcher=self.fetcher,
                robots=self.robots,
                publisher=publisher,
                clock=clock,
                quotes_topic=settings.quotes_topic,
                delay_s=settings.min_delay_s,
            )
            for feed in settings.feed_list
        ]
        self._last_crawl: dict[str, float] = {}
        self.last_reports: dict[str, CrawlReport] = {}

    def summary(self) -> str:
        """One line for /healthz: sites, feeds, and each site's last crawl (slow, broken)."""
        parts = [f"{len(self.sites)} sites, {len(self.feeds)} feeds"]
        for name, report in sorted(self.last_reports.items()):
            parts.append(
                f"{name}: {report.pages} pages, {len(report.slow)} slow, "
                f"{report.broken_blocks} broken blocks"
            )
        return "; ".join(parts)

    async def aclose(self) -> None:
        await self.robots.aclose()
        await self.fetcher.aclose()

    async def run_once(self) -> None:
        """Each site crawled and each feed polled once, concurrently (the gate keeps it polite)."""
        crawls = asyncio.gather(*(s.crawl_once() for s in self.sites))
        polls = asyncio.gather(*(f.poll_once() for f in self.feeds))
        reports, _ = await asyncio.gather(crawls, polls)
        self.last_reports.update((r.site, r) for r in reports)

    async def _site_loop(self, crawler: SiteCrawler) -> None:
        while True:
            try:
                report = await crawler.crawl_once()
                self.last_reports[crawler.site.name] = report
                self._last_crawl[crawler.site.name] = self.clock.monotonic()
            except Exception:  # one site's failure must not stop the others
                log.exception("site %s: crawl failed", crawler.site.name)
            await self.clock.sleep(crawler.site.recrawl_interval_s)

    async def _feed_loop(self, poller: FeedPoller) -> None:
        while True:
            try:
                await poller.poll_once()
            except Exception:
                log.exception("feed %s: poll failed", poller.feed.name)
            await self.clock.sleep(poller.feed.interval_s)

    async def _lag_loop(self) -> None:
        started = self.clock.monotonic()
        while True:
            now = self.clock.monotonic()
            for crawler in self.sites:
                last = self._last_crawl.get(crawler.site.name, started)
                metrics.SITE_LAG.labels(site=crawler.site.name).set(now - last)
            await self.clock.sleep(15.0)

    async def run_forever(self) -> None:
        await asyncio.gather(
            *(self._site_loop(s) for s in self.sites),
            *(self._feed_loop(f) for f in self.feeds),
            self._lag_loop(),
        )


async def main(*, once: bool) -> None:
    settings = CrawlerSettings()
    publisher = KafkaPublisher(KafkaSettings())
    app = CrawlerApp(settings, publisher=publisher, clock=SystemClock())
    health = HealthServer(host=settings.http_host, port=settings.http_port)

    async def alive() -> tuple[bool, str]:
        return True, app.summary()

    health.liveness["loop"] = alive
    metrics.SERVICE_INFO.labels(service="crawler").set(1)
    await publisher.start()
    try:
        if once:
            await app.run_once()
            return
        if settings.http_port:
            await health.start()
        await app.run_forever()
    finally:
        with contextlib.suppress(Exception):
            await health.stop()
        await app.aclose()
        await publisher.stop()
