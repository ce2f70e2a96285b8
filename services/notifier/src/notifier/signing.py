"""Standard Webhooks signatures (https://www.standardwebhooks.com/): HMAC-SHA256 over
`<webhook-id>.<webhook-timestamp>.<body>` with the base64-decoded `whsec_` secret. Pure."""

from __future__ import annotations

import base64
import binascii
import hmac

SECRET_PREFIX = "whsec_"  # noqa: S105  # a format prefix, not a secret


def decode_secret(secret: str) -> bytes:
    """The key bytes of a `whsec_<base64>` secret; ValueError says what is wrong with it."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret starts with 'whsec_' (Standard Webhooks)")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error as exc:
        raise ValueError(f"the part after 'whsec_' is not base64: {exc}") from exc
    if not 24 <= len(key) <= 64:
        raise ValueError(f"the secret decodes to {len(key)} bytes; the convention wants 24-64")
    return key


def signature(key: bytes, *, msg_id: str, timestamp_s: int, body: bytes) -> str:
    """The `webhook-signature` value: `v1,<base64 HMAC-SHA256>`."""
    signed = f"{msg_id}.{timestamp_s}.".encode() + body
    digest = hmac.digest(key, signed, "sha256")  # one C call, no HMAC object
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(key: bytes, *, msg_id: str, timestamp_s: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp_s),
        "webhook-signature": signature(key, msg_id=msg_id, timestamp_s=timestamp_s, body=body),
        "content-type": "application/json",
    }
