"""Messages people can act on: what a review and a market alert show, and what they never do."""

from __future__ import annotations

import orjson
from notifier import messages
from notifier_factories import T0, burst_alert, move_alert, review_alert
from servicekit.kafka import encode_event

DASH = "http://127.0.0.1:58000/dashboard/"


def test_review_message_shows_product_rating_sentiment_and_excerpt() -> None:
    text = messages.alert_text(review_alert(), dashboard_url=DASH)
    assert "Kettle (KTL-100) rated 1/5, sentiment negative -0.70" in text
    assert '"The lid broke on day two"' in text
    assert text.endswith("http://127.0.0.1:58000/dashboard/#/reviews")


def test_review_message_never_shows_an_author_even_if_details_had_one() -> None:
    alert = review_alert(author_name="Jane Doe", author_email="jane@example.com")
    payload = messages.webhook_payload(
        [alert],
        notification_id="k",
        receiver="r",
        group_labels={},
        timestamp=T0,
        dashboard_url=None,
    )
    rendered = messages.text_body([alert], dashboard_url=None) + messages.title([alert])
    assert "Jane" not in rendered and "jane@" not in rendered
    assert "Jane" not in str(payload["data"]["text"])


def test_market_message_shows_symbol_move_window_and_price_with_its_view() -> None:
    text = messages.alert_text(move_alert("BTC-USD"), dashboard_url=DASH)
    assert "BTC-USD -5.25% over 5 min: 70000 → 66325" in text
    assert "#/markets/BTC-USD" in text


def test_no_link_without_a_dashboard() -> None:
    assert "http" not in messages.alert_text(review_alert(), dashboard_url=None)


def test_a_group_title_counts_its_alerts() -> None:
    alerts = [review_alert(i) for i in range(4)]
    assert messages.title(alerts) == "[CRITICAL] 4 × Negative review: Kettle (KTL-100)"
    assert messages.title([burst_alert()]).startswith("[CRITICAL] Burst of negative reviews")


def test_the_webhook_body_is_the_payload_with_each_alert_as_published() -> None:
    """The send path splices each alert's published bytes instead of dumping the model: the
    JSON must be the same as the payload's, and a record's own fields are kept as sent."""
    alerts = [review_alert(1), move_alert("BTC-USD")]
    args = {
        "notification_id": "k",
        "receiver": "r",
        "group_labels": {"kind": "negative_review"},
        "timestamp": T0,
        "dashboard_url": DASH,
    }
    expected = messages.webhook_payload(alerts, **args)  # type: ignore[arg-type]
    published = [encode_event(a) for a in alerts]
    assert orjson.loads(messages.webhook_body(alerts, published=published, **args)) == expected  # type: ignore[arg-type]
    assert orjson.loads(messages.webhook_body(alerts, **args)) == expected  # type: ignore[arg-type]
    # a producer's field order and trailing whitespace survive; a non-object falls back
    odd = [b'{"zz": 1, ' + published[0][1:] + b"\n", b"null"]
    body = orjson.loads(messages.webhook_body(alerts, published=odd, **args))  # type: ignore[arg-type]
    assert body["data"]["alerts"][0]["zz"] == 1
    assert body["data"]["alerts"][1] == expected["data"]["alerts"][1]
