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
