"""Crawler test fixtures: the HomeGear fixture site on loopback and settings that may reach it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

FIXTURE_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "crawler_site"
sys.path.insert(0, str(FIXTURE_DIR))

from crawler_fixture_site import FixtureSite  # noqa: E402


@pytest.fixture
def site() -> Iterator[FixtureSite]:
    with FixtureSite(crawl_delay_s=0.0) as running:
        yield running
