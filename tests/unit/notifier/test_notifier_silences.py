"""Silences: matchers, time bounds, validation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from notifier.labels import alert_labels
from notifier.silences import (
    Matcher,
    SilenceRequest,
    SilenceState,
    muted_by,
    new_silence,
)
from notifier_factories import T0, move_alert, review_alert
from pydantic import ValidationError


def test_a_silence_mutes_matching_alerts_only_while_active() -> None:
    request = SilenceRequest(
        matchers=[Matcher(name="subject", value="product:1")],
        starts_at=T0 + timedelta(minutes=1),
        duration_s=600,
    )
    silence = new_silence(request, now=T0)
    labels = alert_labels(review_alert())
    assert silence.state(T0) is SilenceState.PENDING
    assert muted_by([silence], labels, now=T0) is None
    during = T0 + timedelta(minutes=5)
    assert muted_by([silence], labels, now=during) == silence.id
    assert muted_by([silence], alert_labels(review_alert(subject="product:2")), now=during) is None
    assert muted_by([silence], labels, now=T0 + timedelta(minutes=11)) is None


def test_every_matcher_must_match_and_regexes_match_whole_values() -> None:
    silence = new_silence(
        SilenceRequest(
            matchers=[
                Matcher(name="kind", value="price_move"),
                Matcher(name="symbol", value="BTC-.*", regex=True),
            ],
            duration_s=60,
        ),
        now=T0,
    )
    assert muted_by([silence], alert_labels(move_alert("BTC-USD")), now=T0)
    assert not muted_by([silence], alert_labels(move_alert("XBTC-USD")), now=T0)
    assert not muted_by([silence], alert_labels(review_alert()), now=T0)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"matchers": []}, "at least 1"),
        ({"matchers": [{"name": "colour", "value": "x"}]}, "unknown label"),
        ({"matchers": [{"name": "kind", "value": "(", "regex": True}]}, "bad regular expression"),
        ({"matchers": [{"name": "kind", "value": "x"}], "duration_s": None}, "exactly one"),
    ],
)
def test_bad_requests_say_why(fields: dict[str, object], reason: str) -> None:
    body = {"duration_s": 60, **fields}
    if body["duration_s"] is None:
        del body["duration_s"]
    with pytest.raises(ValidationError, match=reason):
        SilenceRequest.model_validate(body)


def test_too_long_or_backwards_silences_are_refused() -> None:
    matchers = [Matcher(name="kind", value="price_move")]
    with pytest.raises(ValueError, match="at most 30 days"):
        new_silence(SilenceRequest(matchers=matchers, duration_s=31 * 86400), now=T0)
    with pytest.raises(ValueError, match="after starts_at"):
        new_silence(
            SilenceRequest(matchers=matchers, starts_at=T0, ends_at=T0 - timedelta(1)), now=T0
        )
