"""Crawl-and-extract throughput vs a bare httpx GET loop over the same pages, in one run.

The HomeGear fixture site runs in a subprocess on loopback; politeness is lifted (no delay,
per-host concurrency = global concurrency). The crawler run includes robots.txt, the SSRF
guard, body cap, schema.org extraction, watermark filtering and publishing to memory.
Target: crawler pages/s >= 0.5x the bare loop's. Last stdout line: {"figures": [...]}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
FIXTURE_DIR = ROOT / "tests" / "fixtures" / "crawler_site"
sys.path.insert(0, str(FIXTURE_DIR))

from crawler.app import CrawlerApp  # noqa: E402
from crawler.publisher import MemoryPublisher  # noqa: E402
from crawler.settings import CrawlerSettings  # noqa: E402
from crawler_fixture_site import site_config  # noqa: E402
from hostile_site import free_port_in_range  # noqa: E402
from servicekit.clock import SystemClock  # noqa: E402

PRODUCTS = ["tst-200", "bln-300", "grl-400", "mxr-500", "cfm-600", "ktl-100"]
CONCURRENCY = 8


def page_urls(origin: str, count: int) -> list[str]:
    # Distinct URLs (the site ignores ?copy=) so dedup keeps every one.
    return [f"{origin}/products/{PRODUCTS[i % len(PRODUCTS)]}.html?copy={i}" for i in range(count)]


async def bare_loop(urls: list[str]) -> float:
    queue: asyncio.Queue[str] = asyncio.Queue()
    for url in urls:
        queue.put_nowait(url)
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def worker() -> None:
            while not queue.empty():
                response = await client.get(queue.get_nowait())
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return len(urls) / (time.perf_counter() - started)


async def crawler_run(origin: str, urls: list[str]) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as state_dir:
        settings = CrawlerSettings(
            sites=(
                site_config(
                    origin,
                    sitemaps=[],
                    start_urls=urls,
                    max_pages=len(urls),
                    allowed_patterns=["copy="],
                    max_review_pages=1,
                ),
            ),
            quote_feeds=(),
            state_dir=Path(state_dir),
            allow_private_networks=("127.0.0.1/32",),
            min_delay_s=0.0,
            global_concurrency=CONCURRENCY,
            per_host_concurrency=CONCURRENCY,
            http_port=0,
        )
        publisher = MemoryPublisher()
        app = CrawlerApp(settings, publisher=publisher, clock=SystemClock())
        try:
            started = time.perf_counter()
            [report] = [await app.sites[0].crawl_once()]
            elapsed = time.perf_counter() - started
        finally:
            await app.aclose()
    assert report.pages == len(urls), report
    return len(urls) / elapsed, report.extracted


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--pages", type=int, default=600)
    args = parser.parse_args()
    count = 60 if args.quick else args.pages
    port = free_port_in_range()  # the crawler's range (61000-61099): shared machine
    server = subprocess.Popen(  # noqa: ASYNC220  # started once, before timing
        [
            sys.executable,
            str(FIXTURE_DIR / "crawler_fixture_site.py"),
            "--port",
            str(port),
            "--crawl-delay",
            "0",
        ],
        stdout=subprocess.DEVNULL,
    )
    origin = f"http://127.0.0.1:{port}"
    try:
        async with asyncio.timeout(15):
            while True:
                try:
                    async with httpx.AsyncClient() as client:
                        await client.get(origin + "/robots.txt")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
        urls = page_urls(origin, count)
        await bare_loop(urls[: min(20, count)])  # warm up both paths
        baseline = await bare_loop(urls)
        crawler_rate, extracted = await crawler_run(origin, urls)
        baseline_after = await bare_loop(urls)  # bracket the crawler run: noise shows up
    finally:
        server.terminate()
        server.wait(timeout=10)
    base = (baseline + baseline_after) / 2
    ratio = crawler_rate / base
    print(
        f"bare httpx GET loop: {baseline:.0f} / {baseline_after:.0f} pages/s; crawler "
        f"crawl+extract: {crawler_rate:.0f} pages/s ({extracted} reviews); ratio {ratio:.2f}x"
    )
    print(
        json.dumps(
            {
                "figures": [
                    {
                        "name": "crawler crawl-and-extract throughput",
                        "value": round(crawler_rate, 1),
                        "unit": "pages/s",
                        "baseline": round(base, 1),
                        "ratio": round(ratio, 3),
                        "target": ">= 0.5x baseline",
                        "pass": ratio >= 0.5,
                    }
                ]
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
