"""Signatures checked by an independent implementation: the `standardwebhooks` package."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from notifier import signing
from notifier.receivers import Outgoing, WebhookReceiver
from notifier_factories import review_alert
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()


def test_signed_headers_verify_with_the_reference_library() -> None:
    body = b'{"type":"pulse.alerts.notification","data":{}}'
    now = int(time.time())
    headers = signing.signed_headers(
        signing.decode_secret(SECRET), msg_id="msg_1", timestamp_s=now, body=body
    )
    assert Webhook(SECRET).verify(body, headers) == orjson.loads(body)


def test_a_changed_body_or_secret_fails_the_reference_check() -> None:
    body = b'{"a":1}'
    now = int(time.time())
    headers = signing.signed_headers(
        signing.decode_secret(SECRET), msg_id="msg_1", timestamp_s=now, body=body
    )
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(b'{"a":2}', headers)
    other = "whsec_" + base64.b64encode(bytes(32)).decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(body, headers)


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        ("c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", "starts with 'whsec_'"),
        ("whsec_not*base64", "not base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "decodes to 5 bytes"),
    ],
)
def test_bad_secrets_are_refused_with_the_reason(secret: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        signing.decode_secret(secret)


async def test_webhook_receiver_request_verifies_and_carries_the_idempotency_key() -> None:
    import httpx

    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    receiver = WebhookReceiver(
        "hook",
        "webhook+https://example.com/hook",
        key=signing.decode_secret(SECRET),
        timeout_s=5,
        dashboard_url="https://pulse.example.com/dashboard/",
        client=client,
    )
    outgoing = Outgoing(key="msg_abc", receiver="hook", group_labels={}, alerts=[review_alert()])
    result = await receiver.send(outgoing, now=datetime.now(UTC))
    assert result.ok
    [request] = seen
    assert str(request.url) == "https://example.com/hook"
    payload = Webhook(SECRET).verify(request.content, dict(request.headers))
    assert request.headers["webhook-id"] == request.headers["idempotency-key"] == "msg_abc"
    assert payload["data"]["alerts"][0]["link"] == "https://pulse.example.com/dashboard/#/reviews"


async def test_a_request_signed_ahead_is_sent_as_is_while_fresh_and_signed_again_when_old() -> None:
    import httpx
    from notifier.receivers import RESIGN_AFTER_S

    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    receiver = WebhookReceiver(
        "hook",
        "webhook+https://example.com/hook",
        key=signing.decode_secret(SECRET),
        timeout_s=5,
        dashboard_url=None,
        client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
    )
    signed_at = datetime.now(UTC) - timedelta(seconds=90)  # verify() wants a recent stamp
    for later_s, expected_at in ((RESIGN_AFTER_S - 1, signed_at), (RESIGN_AFTER_S + 1, None)):
        outgoing = Outgoing(
            key="msg_abc", receiver="hook", group_labels={}, alerts=[review_alert()]
        )
        receiver.prepare(outgoing, now=signed_at)
        sent_at = signed_at + timedelta(seconds=later_s)
        assert (await receiver.send(outgoing, now=sent_at)).ok
        stamp = int(seen[-1].headers["webhook-timestamp"])
        assert stamp == int((expected_at or sent_at).timestamp())
        # either way the signature is valid for its timestamp
        Webhook(SECRET).verify(seen[-1].content, dict(seen[-1].headers))
