"""Crawler test fixtures: the HomeGear fixture site on loopback and settings that may reach it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

FIXTURE_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "crawler_site"
sys.path.insert(0, str(FIXTURE_DIR))

from crawler.settings import CrawlerSettings  # noqa: E402
from crawler_fixture_site import FixtureSite  # noqa: E402


@pytest.fixture
def site() -> Iterator[FixtureSite]:
    with FixtureSite(crawl_delay_s=0.0) as running:
        yield running


def site_config(origin: str, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": "homegear",
        "sitemaps": [f"{origin}/sitemap.xml"],
        "start_urls": [f"{origin}/index.html"],
        "allowed_patterns": ["/products/", "/index\\.html$", "/private/"],
        "product": {
            "sku_is_ours": True,
            "refs": {"gtin13:4006381400008": "GRL-400"},
            "url_rules": [{"pattern": "/products/(?P<sku>[a-z]{3}-\\d{3})\\.html"}],
        },
        "selectors": {
            "review": "div.avis",
            "body": "p.texte",
            "title": "h3.titre",
            "author": "span.auteur",
            "date": "time",
            "rating": "span.note",
            "rating_attr": "data-note",
            "best_rating": 10,
            "worst_rating": 0,
            "review_id_attr": "data-avis-id",
        },
    }
    config.update(overrides)
    return config


def feed_config(origin: str) -> dict[str, Any]:
    return {
        "name": "homegear-markets",
        "url": f"{origin}/api/quotes.json",
        "asset_class": "equity",
        "items_path": "data.quotes",
        "fields": {
            "symbol": "ticker",
            "price": "last",
            "size": "qty",
            "time": "ts",
            "asset_class": "kind",
        },
    }


def make_settings(tmp_path: Path, **overrides: Any) -> CrawlerSettings:
    values: dict[str, Any] = {
        "state_dir": tmp_path / "state",
        "allow_private_networks": ("127.0.0.1/32",),
        "min_delay_s": 0.0,
        "backoff_base_s": 0.05,
        "backoff_max_s": 0.2,
        "request_deadline_s": 3.0,
        "max_body_bytes": 256 * 1024,
        "http_port": 0,
        "sites": (),
        "quote_feeds": (),
    }
    values.update(overrides)
    return CrawlerSettings(**values)
