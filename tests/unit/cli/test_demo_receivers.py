"""The demo's notifier stages: local receivers really listen, verify signatures, and the
stages count only what the run caused."""

from __future__ import annotations

import smtplib
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import httpx
import orjson
import pytest
from contracts.events import AlertKind, AlertRaised, AlertSeverity
from notifier import messages, signing
from pulse_cli import demo, demo_receivers, processes


def alert(kind: AlertKind, subject: str, sku: str | None = None) -> AlertRaised:
    now = datetime(2026, 12, 7, tzinfo=UTC)
    return AlertRaised(
        alert_id=f"{kind}-{subject}",
        kind=kind,
        subject=subject,
        severity=AlertSeverity.CRITICAL,
        message="m",
        event_time=now,
        details={"product_sku": sku} if sku else {},
        raised_at=now,
    )


def post_signed(url: str, secret: str, alerts: list[AlertRaised], *, key: str) -> None:
    body = orjson.dumps(
        messages.webhook_payload(
            alerts,
            notification_id=key,
            receiver="webhook-1",
            group_labels={},
            timestamp=datetime.now(UTC),
            dashboard_url=None,
        )
    )
    headers = signing.signed_headers(
        signing.decode_secret(secret), msg_id=key, timestamp_s=int(time.time()), body=body
    )
    assert httpx.post(url, content=body, headers=headers, timeout=5).status_code == 200


def test_receivers_listen_and_the_stages_count_this_runs_notifications(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(processes, "DEMO_WEBHOOK_PORT", 61391)
    monkeypatch.setattr(processes, "DEMO_SMTP_PORT", 61392)
    sc = demo.demo_scenario("abcd1234", scale=0.2, start=datetime(2026, 12, 7, tzinfo=UTC))
    assert not (tmp_path / ".stack").exists()
    processes.notifier_webhook_secret(tmp_path)
    assert not (tmp_path / ".stack").exists()  # no stack here: nothing written
    (tmp_path / ".stack").mkdir()
    secret = processes.notifier_webhook_secret(tmp_path)
    assert secret == processes.notifier_webhook_secret(tmp_path)  # made once, then reused
    with demo_receivers.local_receivers(tmp_path) as receivers:
        url = "http://127.0.0.1:61391/pulse"
        post_signed(
            url, secret, [alert(AlertKind.NEGATIVE_BURST, "product:1", sc.burst_sku)], key="k1"
        )
        post_signed(url, secret, [alert(AlertKind.PRICE_MOVE, sc.equity)], key="k2")
        post_signed(url, secret, [alert(AlertKind.PRICE_MOVE, "OTHER")], key="k3")  # not ours
        wrong = "whsec_" + "A" * 43 + "="
        post_signed(url, wrong, [alert(AlertKind.NEGATIVE_REVIEW, "p", sc.burst_sku)], key="k4")
        mail = EmailMessage()
        mail["From"], mail["To"], mail["Subject"] = "a@x.org", "b@x.org", "[CRITICAL] burst"
        mail.set_content(f"{sc.burst_sku} had a burst")
        with smtplib.SMTP("127.0.0.1", 61392, timeout=5) as client:
            client.send_message(mail)
        stages, lines = demo.notifier_stages(receivers, sc, wait_s=0)
    by_name = {s.name: s for s in stages}
    assert by_name["notifier: burst by signed webhook"].ok
    assert by_name["notifier: price move by signed webhook"].ok
    assert by_name["notifier: email received (aiosmtpd)"].ok
    signatures = by_name["notifier: webhook signatures valid"]
    assert (signatures.expected, signatures.actual) == (3, 2)  # k4's signature is wrong
    assert not signatures.ok
    assert any(line.startswith("email: [CRITICAL] burst") for line in lines)


def test_without_receivers_every_notifier_stage_fails_with_a_note() -> None:
    sc = demo.demo_scenario("abcd1234", scale=0.2, start=datetime(2026, 12, 7, tzinfo=UTC))
    stages, _ = demo.notifier_stages(None, sc, wait_s=0)
    assert [s.ok for s in stages if s.expected == 1] == [False, False, False]
