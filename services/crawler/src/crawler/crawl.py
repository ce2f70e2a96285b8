"""One crawl of one site, and one poll of one quote feed: fetch → extract → publish → remember.

Order per site crawl: 1. walk sitemaps and start URLs within the page budget 2. extract and
group reviews by product 3. publish the new ones and wait for acks 4. then save the
watermark. A crash between 3 and 4 republishes (same keys), never loses.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from dataclasses import dataclass, field

from contracts.events import ReviewCrawled
from contracts.identity import crawled_review_event_id
from servicekit import metrics
from servicekit.clock import Clock

from crawler.extraction import (
    ExtractedReview,
    PageExtract,
    decode_html,
    extract_page,
    map_product,
    parse_sitemap,
)
from crawler.fetcher import SLOW_REASONS, Fetcher, FetchError
from crawler.publisher import Publisher
from crawler.quotes import FeedError, parse_feed
from crawler.robots import RobotsCache
from crawler.settings import QuoteFeedConfig, SiteConfig
from crawler.urls import UnsupportedURLError, matches_any, normalise_url, origin_of
from crawler.watermark import ProductMark, StateStore, advance, select_new

log = logging.getLogger(__name__)

_HTML_TYPES = ("text/html", "application/xhtml+xml")
_SITEMAP_TYPES = ("application/xml", "text/xml", "text/plain")
_MAX_SITEMAPS = 10


@dataclass
class CrawlReport:
    site: str
    pages: int = 0
    robots_denied: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    extracted: int = 0
    published: int = 0
    unmapped: int = 0
    broken_blocks: int = 0  # structured-data blocks that could not be read (others kept)
    slow: list[str] = field(default_factory=list)  # URLs given up as slow (trickle or budget)

    def error(self, reason: str) -> None:
        self.errors[reason] = self.errors.get(reason, 0) + 1


@dataclass(frozen=True, slots=True)
class _Job:
    url: str
    pagination_depth: int


class SiteCrawler:
    def __init__(
        self,
        site: SiteConfig,
        *,
        fetcher: Fetcher,
        robots: RobotsCache,
        state: StateStore,
        publisher: Publisher,
        clock: Clock,
        reviews_topic: str,
        default_delay_s: float,
        seen_ids_per_product: int,
        concurrency: int = 1,
    ) -> None:
        self.site = site
        self._fetcher = fetcher
        self._robots = robots
        self._state = state
        self._publisher = publisher
        self._clock = clock
        self._topic = reviews_topic
        self._base_delay_s = site.min_delay_s if site.min_delay_s is not None else default_delay_s
        self._keep = seen_ids_per_product
        self._concurrency = max(1, concurrency)
        self._patterns = [re.compile(p) for p in site.allowed_patterns]
        self._origins = {origin_of(normalise_url(u)) for u in (*site.start_urls, *site.sitemaps)}

    async def _get(
        self, url: str, report: CrawlReport, content_types: tuple[str, ...]
    ) -> tuple[str, str] | None:
        """(final url, text) of a page robots.txt allows, or None (counted)."""
        allowed, crawl_delay = await self._robots.allowed(url, delay_s=self._base_delay_s)
        if not allowed:
            report.robots_denied += 1
            metrics.ROBOTS_DENIALS.labels(site=self.site.name).inc()
            return None
        delay = max(self._base_delay_s, crawl_delay or 0.0)
        try:
            result = await self._fetcher.fetch(url, delay_s=delay, content_types=content_types)
        except FetchError as exc:
            report.error(exc.reason)
            metrics.PAGES_FETCHED.labels(site=self.site.name, status=exc.reason).inc()
            if exc.reason in SLOW_REASONS:
                report.slow.append(url)
                metrics.SLOW_PAGES.labels(site=self.site.name, reason=exc.reason).inc()
                log.warning("site %s: slow page given up (%s)", self.site.name, exc)
            else:
                log.info("site %s: %s", self.site.name, exc)
            return None
        report.pages += 1
        metrics.PAGES_FETCHED.labels(site=self.site.name, status=str(result.status)).inc()
        if not result.ok:
            report.error(f"http_{result.status}")
            return None
        return result.url, decode_html(result.body, header_charset=result.charset)

    def _admissible(self, url: str) -> bool:
        return origin_of(url) in self._origins and matches_any(url, self._patterns)

    async def _seed(self, report: CrawlReport) -> list[str]:
        pages: list[str] = list(self.site.start_urls)
        sitemaps = deque(self.site.sitemaps)
        done = 0
        while sitemaps and done < _MAX_SITEMAPS:
            done += 1
            got = await self._get(sitemaps.popleft(), report, _SITEMAP_TYPES)
            if got is None:
                continue
            found, nested = parse_sitemap(got[1], got[0])
            pages.extend(found)
            sitemaps.extend(nested)
        return pages

    async def crawl_once(self) -> CrawlReport:
        report = CrawlReport(site=self.site.name)
        seen: set[str] = set()
        frontier: deque[_Job] = deque()

        def enqueue(url: str, depth: int, *, base: str | None = None) -> None:
            try:
                normal = normalise_url(url, base=base)
            except UnsupportedURLError:
                return
            if normal not in seen and self._admissible(normal):
                seen.add(normal)
                frontier.append(_Job(normal, depth))

        for url in await self._seed(report):
            enqueue(url, 0)
        by_product: dict[str, list[ExtractedReview]] = {}
        sku_of: dict[str, str | None] = {}
        url_of: dict[str, str] = {}
        budget = self.site.max_pages
        running: dict[asyncio.Task[tuple[str, PageExtract] | None], _Job] = {}
        try:
            while (frontier and budget > 0) or running:
                # Keep up to `concurrency` pages in flight; the host gate still paces them.
                while frontier and budget > 0 and len(running) < self._concurrency:
                    job = frontier.popleft()
                    budget -= 1
                    running[asyncio.create_task(self._visit(job, report))] = job
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    job = running.pop(task)
                    outcome = task.result()
                    if outcome is None:
                        continue
                    final_url, page = outcome
                    seen.add(final_url)
                    for review in page.reviews:
                        refs = review.product_refs or page.product_refs
                        sku = map_product(refs, final_url, self.site.product)
                        key = sku or next((f"{k}:{v}" for k, v in sorted(refs.items())), final_url)
                        by_product.setdefault(key, []).append(review)
                        sku_of[key] = sku
                        url_of.setdefault(review.external_id, final_url)
                        report.extracted += 1
                    metrics.CRAWLED_REVIEWS.labels(site=self.site.name, stage="extracted").inc(
                        len(page.reviews)
                    )
                    if job.pagination_depth < self.site.max_review_pages:
                        for nxt in page.next_pages:
                            enqueue(nxt, job.pagination_depth + 1)
                    for link in page.links:
                        enqueue(link, 0)
        finally:
            for task in running:
                task.cancel()

        await self._publish(by_product, sku_of, url_of, report)
        metrics.SITE_LAG.labels(site=self.site.name).set(0)
        log.info(
            "site %s crawled: %d pages, %d reviews extracted, %d published, errors %s, "
            "%d broken structured-data blocks, %d slow pages",
            self.site.name,
            report.pages,
            report.extracted,
            report.published,
            report.errors,
            report.broken_blocks,
            len(report.slow),
        )
        return report

    async def _visit(self, job: _Job, report: CrawlReport) -> tuple[str, PageExtract] | None:
        got = await self._get(job.url, report, _HTML_TYPES)
        if got is None:
            return None
        final_url, html = got
        page = extract_page(
            html,
            final_url,
            selectors=self.site.selectors,
            next_page_selector=self.site.next_page_selector,
            default_language=self.site.language,
        )
        self._note_broken(final_url, page, report)
        return final_url, page

    def _note_broken(self, url: str, page: PageExtract, report: CrawlReport) -> None:
        """Count and log unreadable structured-data blocks; the page's other blocks were kept."""
        for block in page.broken:
            report.broken_blocks += 1
            metrics.STRUCTURED_DATA_ERRORS.labels(site=self.site.name, syntax=block.syntax).inc()
            log.warning(
                "site %s: %s block %d on %s unreadable (%s); %d reviews kept from the page",
                self.site.name,
                block.syntax,
                block.index,
                url,
                block.error,
                len(page.reviews),
            )

    async def _publish(
        self,
        by_product: dict[str, list[ExtractedReview]],
        sku_of: dict[str, str | None],
        url_of: dict[str, str],
        report: CrawlReport,
    ) -> None:
        marks = self._state.load(self.site.name)
        now = self._clock.now()
        records: list[tuple[str, ReviewCrawled]] = []
        new_marks: dict[str, ProductMark] = dict(marks)
        for key, reviews in by_product.items():
            mark = marks.get(key, ProductMark())
            fresh = select_new(reviews, mark)
            if sku_of[key] is None:
                report.unmapped += len(fresh)
            for review in fresh:
                reading = review.rating_reading
                event = ReviewCrawled(
                    source=self.site.name,
                    external_id=review.external_id,
                    url=url_of[review.external_id],
                    product_sku=sku_of[key],
                    product_ref=next(
                        (f"{k}:{v}" for k, v in sorted(review.product_refs.items())), None
                    ),
                    rating=review.rating,
                    rating_exact=reading.normalized if reading else None,
                    rating_source_value=reading.source_value if reading else None,
                    rating_source_worst=reading.source_worst if reading else None,
                    rating_source_best=reading.source_best if reading else None,
                    title=review.title,
                    body=review.body,
                    author_name=review.author_name,
                    published_at=review.published_at,
                    language=review.language,
                    crawled_at=now,
                    event_id=crawled_review_event_id(
                        self.site.name,
                        review.external_id,
                        content=(
                            sku_of[key],
                            review.rating,
                            reading.normalized if reading else None,
                            review.title,
                            review.body,
                            review.author_name,
                            review.published_at,
                        ),
                    ),
                )
                records.append((event.key, event))
            new_marks[key] = advance(mark, fresh, keep=self._keep)
        # 1. every record acknowledged by Kafka  2. then the watermark moves.
        await self._publisher.publish_all(self._topic, records)
        self._state.save(self.site.name, new_marks)
        report.published = len(records)
        metrics.CRAWLED_REVIEWS.labels(site=self.site.name, stage="published").inc(len(records))


class FeedPoller:
    def __init__(
        self,
        feed: QuoteFeedConfig,
        *,
        fetcher: Fetcher,
        robots: RobotsCache,
        publisher: Publisher,
        clock: Clock,
        quotes_topic: str,
        delay_s: float,
    ) -> None:
        self.feed = feed
        self._fetcher = fetcher
        self._robots = robots
        self._publisher = publisher
        self._clock = clock
        self._topic = quotes_topic
        self._delay_s = delay_s

    async def poll_once(self) -> int:
        """Publish the feed's current quotes; returns how many. Failures are logged, not raised."""
        if self.feed.respect_robots:
            allowed, _ = await self._robots.allowed(self.feed.url, delay_s=self._delay_s)
            if not allowed:
                metrics.ROBOTS_DENIALS.labels(site=self.feed.name).inc()
                log.warning("feed %s: robots.txt disallows %s", self.feed.name, self.feed.url)
                return 0
        try:
            result = await self._fetcher.fetch(
                self.feed.url,
                delay_s=self._delay_s,
                content_types=("application/json", "text/plain"),
            )
        except FetchError as exc:
            if exc.reason in SLOW_REASONS:
                metrics.SLOW_PAGES.labels(site=self.feed.name, reason=exc.reason).inc()
            log.warning("feed %s: %s", self.feed.name, exc)
            return 0
        metrics.PAGES_FETCHED.labels(site=self.feed.name, status=str(result.status)).inc()
        if not result.ok:
            return 0
        try:
            parsed = parse_feed(result.body, self.feed, polled_at=self._clock.now())
        except FeedError as exc:
            log.warning("feed %s: %s", self.feed.name, exc)
            return 0
        for reason in parsed.rejected:
            log.warning("feed %s: skipped %s", self.feed.name, reason)
        await self._publisher.publish_all(self._topic, [(q.symbol, q) for q in parsed.quotes])
        metrics.QUOTES_POLLED.labels(feed=self.feed.name).inc(len(parsed.quotes))
        return len(parsed.quotes)
