"""Alert details the notifier routes on and shows: product fields, sentiment, a scrubbed excerpt."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cdc_processor import alerts
from contracts.events import ReviewEnriched, ReviewOp, SentimentLabel

NOW = datetime(2026, 12, 7, tzinfo=UTC)
CONFIG = alerts.ReviewAlertConfig(
    negative_rating_max=2,
    negative_text_score=-0.5,
    burst_window=timedelta(minutes=10),
    burst_threshold=2,
)


def review(n: int, body: str = "Leaks [EMAIL] everywhere") -> ReviewEnriched:
    return ReviewEnriched(
        review_id=f"r{n}",
        op=ReviewOp.UPSERT,
        source="app",
        dedup_key=f"d{n}",
        product_id=7,
        product_sku="KTL-100",
        product_name="Kettle",
        product_brand="Acme",
        product_category="kitchen",
        rating=1,
        title="Bad",
        body=body,
        author_pseudonym="abc123",
        sentiment_score=-0.8,
        sentiment_label=SentimentLabel.NEGATIVE,
        event_time=NOW,
        enriched_at=NOW,
    )


def test_negative_review_alert_carries_product_sentiment_and_excerpt_not_the_author() -> None:
    alert = alerts.negative_review_alert(review(1), CONFIG, now=NOW)
    assert alert is not None
    assert alert.details["product_sku"] == "KTL-100"
    assert alert.details["product_name"] == "Kettle"
    assert alert.details["product_category"] == "kitchen"
    assert alert.details["sentiment_label"] == "negative"
    assert alert.details["excerpt"] == "Bad — Leaks [EMAIL] everywhere"
    assert "abc123" not in str(alert.details)


def test_excerpt_is_cut_to_its_limit() -> None:
    alert = alerts.negative_review_alert(review(1, body="x" * 1000), CONFIG, now=NOW)
    assert alert is not None and len(alert.details["excerpt"]) == alerts.EXCERPT_CHARS


def test_burst_alert_carries_the_product_fields() -> None:
    state = alerts.new_burst_state()
    assert alerts.observe_negative(state, review(1), CONFIG, now=NOW) is None
    burst = alerts.observe_negative(state, review(2), CONFIG, now=NOW)
    assert burst is not None and burst.details["product_brand"] == "Acme"
