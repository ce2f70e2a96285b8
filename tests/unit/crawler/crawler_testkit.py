"""Settings for crawler tests that may reach the loopback fixture site."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crawler.settings import CrawlerSettings

FIXTURE_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "crawler_site"


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
