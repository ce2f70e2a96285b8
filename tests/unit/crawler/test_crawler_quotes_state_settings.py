"""Quote parsing with exact decimals, watermarks and their state file, settings loading."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from crawler.extraction import ExtractedReview
from crawler.quotes import FeedError, parse_feed
from crawler.settings import CrawlerSettings, QuoteFeedConfig
from crawler.watermark import ProductMark, StateStore, advance, select_new
from crawler_fixture_site import QUOTES_JSON, feed_config
from crawler_testkit import FIXTURE_DIR
from servicekit.settings import SettingsError, load_settings

NOW = datetime(2026, 11, 22, 17, 5, tzinfo=UTC)
FEED = QuoteFeedConfig.model_validate(feed_config("http://h.example"))
EXACT_BODY = QUOTES_JSON


def test_quotes_keep_every_digit() -> None:
    parsed = parse_feed(EXACT_BODY, FEED, polled_at=NOW)
    by_symbol = {q.symbol: q for q in parsed.quotes}
    assert by_symbol["BTC-USD"].price == Decimal("67012.123456789012345678")
    assert by_symbol["BTC-USD"].size == Decimal("0.00012345")
    assert by_symbol["BTC-USD"].asset_class == "crypto"
    assert by_symbol["ACME"].asset_class == "equity"
    assert by_symbol["ACME"].price == Decimal("101.25") and by_symbol["ACME"].size == Decimal(300)
    assert by_symbol["ETH-USD"].price == Decimal("3521.10")
    assert by_symbol["ACME"].event_time == datetime(2026, 11, 22, 17, 0, 0, 250000, tzinfo=UTC)
    assert by_symbol["ACME"].model_dump(mode="json")["price"] == "101.25"
    assert len(parsed.rejected) == 1 and "item 3" in parsed.rejected[0]


def test_epoch_ms_times_and_single_object_feeds() -> None:
    feed = QuoteFeedConfig(
        name="f",
        url="http://h/",
        asset_class="crypto",
        symbol="BTC-USD",
        time_format="epoch_ms",
        fields={"price": "p", "size": "q", "time": "t"},
    )
    parsed = parse_feed(b'{"p": 1.10, "q": 2, "t": 1795539600000}', feed, polled_at=NOW)
    [quote] = parsed.quotes
    assert quote.price == Decimal("1.10") and quote.symbol == "BTC-USD"
    assert quote.event_time == datetime.fromtimestamp(1795539600, tz=UTC)


def test_non_json_feed_is_a_feed_error() -> None:
    with pytest.raises(FeedError):
        parse_feed(b"<html>", FEED, polled_at=NOW)
    with pytest.raises(FeedError):
        parse_feed(b'{"data": {"quotes": 3}}', FEED, polled_at=NOW)


def review(rid: str, when: datetime | None) -> ExtractedReview:
    return ExtractedReview(
        external_id=rid,
        body="b",
        rating=None,
        rating_reading=None,
        title=None,
        author_name=None,
        published_at=when,
        language=None,
        product_refs={},
        via="json-ld",
    )


def test_only_unseen_reviews_not_older_than_the_watermark_are_new() -> None:
    t = datetime(2026, 10, 1, tzinfo=UTC)
    first = [review("a", t), review("b", t + timedelta(days=1)), review("c", None)]
    assert select_new(first, ProductMark()) == first
    mark = advance(ProductMark(), first, keep=100)
    assert mark.watermark == t + timedelta(days=1) and mark.seen_ids == ("a", "b", "c")
    again = [
        *first,
        review("old", t - timedelta(days=5)),
        review("d", t + timedelta(days=2)),
        review("e", None),
        review("d", t + timedelta(days=2)),
    ]
    assert [r.external_id for r in select_new(again, mark)] == ["d", "e"]


def test_seen_ids_are_bounded() -> None:
    mark = advance(ProductMark(), [review(str(i), None) for i in range(50)], keep=10)
    assert mark.seen_ids == tuple(str(i) for i in range(40, 50))


def test_state_survives_a_new_store_and_is_written_atomically(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")
    assert store.load("shop") == {}
    mark = ProductMark(watermark=datetime(2026, 10, 1, tzinfo=UTC), seen_ids=("x", "y"))
    store.save("shop", {"KTL-100": mark})
    assert StateStore(tmp_path / "state").load("shop") == {"KTL-100": mark}
    assert os.listdir(tmp_path / "state") == ["shop.json"]  # no temp file left behind
    document = json.loads((tmp_path / "state" / "shop.json").read_text())
    assert document["products"]["KTL-100"]["watermark"] == "2026-10-01T00:00:00+00:00"


def test_sites_come_from_yaml_and_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRAWLER_SITES_FILE", str(FIXTURE_DIR / "sites.yaml"))
    monkeypatch.setenv("CRAWLER_ALLOW_PRIVATE_NETWORKS", "127.0.0.1/32,::1/128")
    monkeypatch.setenv("CRAWLER_MIN_DELAY_S", "2.5")
    settings = CrawlerSettings()
    assert [s.name for s in settings.site_list] == ["homegear"]
    assert settings.site_list[0].selectors is not None
    assert [f.name for f in settings.feed_list] == ["homegear-markets"]
    assert settings.min_delay_s == 2.5 and len(settings.allowed_networks) == 2
    monkeypatch.setenv(
        "CRAWLER_SITES", json.dumps([{"name": "other", "start_urls": ["http://o/"]}])
    )
    assert [s.name for s in CrawlerSettings().site_list] == ["other"]


def test_private_networks_are_closed_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("CRAWLER_"):
            monkeypatch.delenv(key)
    settings = CrawlerSettings()
    assert settings.allowed_networks == () and settings.per_host_concurrency == 1
    assert settings.http_port == 58013 and settings.max_redirects == 5


def test_bad_settings_exit_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CRAWLER_ALLOW_PRIVATE_NETWORKS", "not-a-cidr")
    with pytest.raises(SettingsError):
        load_settings(CrawlerSettings)
    assert "CRAWLER_ALLOW_PRIVATE_NETWORKS" in capsys.readouterr().err
    monkeypatch.delenv("CRAWLER_ALLOW_PRIVATE_NETWORKS")
    monkeypatch.setenv("CRAWLER_SITES", json.dumps([{"name": "no-entry"}]))
    with pytest.raises(SettingsError):
        load_settings(CrawlerSettings)
