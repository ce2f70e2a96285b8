"""Crawler settings: process options from `CRAWLER_*` variables, sites and feeds from YAML.

Sites and quote feeds are configuration, not code: `CRAWLER_SITES_FILE` names a YAML document
with `sites:` and `quote_feeds:` lists; `CRAWLER_SITES` / `CRAWLER_QUOTE_FEEDS` (JSON) override
them. Everything is validated at start-up.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from contracts import topics
from contracts.rows import AssetClass
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict
from servicekit.settings import ServiceSettings

from crawler.addresses import IPNetwork, parse_networks


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class UrlSkuRule(_Frozen):
    """A URL regex mapped to our SKU; a named group `sku` takes the SKU from the URL."""

    pattern: str
    sku: str | None = None
    uppercase: bool = True  # SKUs in URLs are often lowercased (`/ktl-100.html` → KTL-100)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        re.compile(value)
        return value


class ProductMapping(_Frozen):
    """How a page's product maps to our SKU.

    `refs` maps what the page states (`sku:…`, `gtin:…`, `gtin13:…`, `mpn:…`) to our SKU;
    `sku_is_ours` takes a stated schema.org `sku` as ours; `url_rules` are tried last.
    """

    refs: dict[str, str] = Field(default_factory=dict)
    sku_is_ours: bool = False
    url_rules: tuple[UrlSkuRule, ...] = ()


class Selectors(_Frozen):
    """CSS selectors for pages without structured data (relative to each `review` node)."""

    review: str
    body: str
    rating: str | None = None
    rating_attr: str | None = None  # read the rating from this attribute instead of the text
    best_rating: float = 5.0
    worst_rating: float = 1.0
    author: str | None = None
    date: str | None = None
    date_attr: str | None = "datetime"
    title: str | None = None
    review_id_attr: str | None = None  # attribute of the review node holding its id


class SiteConfig(_Frozen):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    start_urls: tuple[str, ...] = ()
    sitemaps: tuple[str, ...] = ()
    allowed_patterns: tuple[str, ...] = ()  # regexes a URL must match to be fetched
    product: ProductMapping = ProductMapping()
    recrawl_interval_s: float = Field(default=6 * 3600.0, gt=0)
    selectors: Selectors | None = None
    next_page_selector: str = "a[rel~=next], link[rel~=next]"
    max_pages: int = Field(default=200, ge=1)
    max_review_pages: int = Field(default=20, ge=1)  # pagination depth per product
    min_delay_s: float | None = Field(default=None, ge=0)  # overrides the global default
    language: str | None = None  # when neither the review nor the page states one

    @field_validator("allowed_patterns")
    @classmethod
    def _patterns_compile(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            re.compile(pattern)
        return value

    @model_validator(mode="after")
    def _has_entry(self) -> SiteConfig:
        if not self.start_urls and not self.sitemaps:
            raise ValueError(f"site {self.name!r} needs start_urls or sitemaps")
        return self


class QuoteFields(_Frozen):
    """Dotted paths into one quote object."""

    symbol: str = "symbol"
    price: str = "price"
    size: str = "size"
    time: str = "time"
    asset_class: str | None = None  # path to "equity"/"crypto"; else the feed's asset_class


class QuoteFeedConfig(_Frozen):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    url: str
    interval_s: float = Field(default=60.0, gt=0)
    asset_class: AssetClass
    items_path: str | None = None  # dotted path to the list of quotes; None: the body is one
    fields: QuoteFields = QuoteFields()
    time_format: Literal["iso", "epoch_s", "epoch_ms"] = "iso"
    symbol: str | None = None  # fixed symbol when the feed does not state one
    respect_robots: bool = True


class CrawlerSettings(ServiceSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore", env_prefix="CRAWLER_")

    http_host: str = "0.0.0.0"  # noqa: S104  # probes reach the pod IP
    http_port: int = Field(default=58013, ge=0, le=65535)

    sites_file: Path | None = None
    sites: tuple[SiteConfig, ...] | None = None  # JSON in CRAWLER_SITES overrides the file
    quote_feeds: tuple[QuoteFeedConfig, ...] | None = None

    state_dir: Path = Path("/var/lib/pulse-crawler")
    user_agent: str = "PulseCrawler/0.1 (+https://pulse.example/crawler)"
    robots_agent: str = "PulseCrawler"  # the product token matched in robots.txt groups

    # CIDRs opened explicitly, comma-separated or a JSON list (tests: 127.0.0.1/32).
    allow_private_networks: Annotated[tuple[str, ...], NoDecode] = ()
    global_concurrency: int = Field(default=8, ge=1)
    per_host_concurrency: int = Field(default=1, ge=1)
    min_delay_s: float = Field(default=1.0, ge=0)
    request_deadline_s: float = Field(default=30.0, gt=0)  # whole request incl. body
    # One URL's whole cost: every attempt, backoff and Retry-After wait together.
    url_budget_s: float = Field(default=60.0, gt=0)
    # A body below this rate once trickle_grace_s has passed is a trickle: given up, not retried.
    min_body_bytes_per_s: float = Field(default=1024.0, ge=0)
    trickle_grace_s: float = Field(default=5.0, gt=0)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    max_retries: int = Field(default=3, ge=0)
    backoff_base_s: float = Field(default=0.5, ge=0)
    backoff_max_s: float = Field(default=30.0, ge=0)
    max_retry_after_s: float = Field(default=300.0, ge=0)
    max_redirects: int = Field(default=5, ge=0, le=5)
    max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    content_types: tuple[str, ...] = (
        "text/html",
        "application/xhtml+xml",
        "application/xml",
        "text/xml",
        "application/json",
        "application/ld+json",
        "text/plain",
    )
    robots_cache_s: float = Field(default=24 * 3600.0, gt=0, le=24 * 3600.0)
    seen_ids_per_product: int = Field(default=5000, ge=10)

    reviews_topic: str = topics.REVIEWS_CRAWLED.name
    quotes_topic: str = topics.MARKET_QUOTES.name

    @field_validator("allow_private_networks", mode="before")
    @classmethod
    def _split_cidrs(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value.strip().startswith("["):
                return tuple(json.loads(value))
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("allow_private_networks")
    @classmethod
    def _cidrs_parse(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        parse_networks(value)
        return value

    @property
    def allowed_networks(self) -> tuple[IPNetwork, ...]:
        return parse_networks(self.allow_private_networks)

    @model_validator(mode="after")
    def _load_sites_file(self) -> CrawlerSettings:
        if self.sites_file is None:
            return self
        document = yaml.safe_load(self.sites_file.read_text(encoding="utf-8")) or {}
        if not isinstance(document, dict):
            raise ValueError(f"{self.sites_file}: expected a mapping with sites/quote_feeds")
        if self.sites is None:
            sites = tuple(SiteConfig.model_validate(s) for s in document.get("sites") or ())
            object.__setattr__(self, "sites", sites)
        if self.quote_feeds is None:
            feeds = document.get("quote_feeds") or ()
            parsed = tuple(QuoteFeedConfig.model_validate(f) for f in feeds)
            object.__setattr__(self, "quote_feeds", parsed)
        return self

    @property
    def site_list(self) -> tuple[SiteConfig, ...]:
        return self.sites or ()

    @property
    def feed_list(self) -> tuple[QuoteFeedConfig, ...]:
        return self.quote_feeds or ()
