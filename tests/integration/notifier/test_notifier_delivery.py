"""The notifier on the real stack with real local receivers: email over SMTP (aiosmtpd), the
signed webhook, grouping, Retry-After, hangs and closed connections, the DLQ."""

from __future__ import annotations

import asyncio
import base64

import orjson
import pytest
from notifier.sinks import Mode
from notifier_harness import SECRET, produce, read_topic, review_alert, unique, wait_until
from standardwebhooks.webhooks import Webhook

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


async def test_alert_arrives_as_email_and_as_signed_webhook_and_bad_records_go_to_dlq(
    stack_env, topics, notifier, webhook, smtp
) -> None:
    alerts, dlq = topics
    hook = await webhook()
    notifier(urls=f"webhook+{hook.url},{smtp.url(to='reviews@example.com')}", group_wait_s="1")
    bootstrap = stack_env["KAFKA_BOOTSTRAP_SERVERS"]
    run = unique("r")
    [sent_at] = await produce(bootstrap, alerts, [review_alert(1, run=run)])
    await produce(bootstrap, alerts, [b"{not json"], key=b"bad-key")
    await wait_until(lambda: hook.received and smtp.mails, timeout_s=30, what="both receivers")

    [got] = hook.received
    payload = Webhook(SECRET).verify(got.body, got.headers)  # independent verification
    assert got.signature_ok is True
    assert payload["data"]["alerts"][0]["alert_id"] == f"{run}review-product:1-1"
    assert got.headers["webhook-id"] == got.headers["idempotency-key"]
    [mail] = smtp.mails
    assert mail.rcpt_tos == ("reviews@example.com",)
    assert "Kettle (KTL-100) rated 1/5, sentiment negative" in mail.subject
    assert "The lid broke on day two" in mail.body
    # within group_wait (1 s) plus a little: well under "within seconds"
    assert got.at_s - sent_at < 5.0 and mail.at_s - sent_at < 5.0

    [dead] = await read_topic(bootstrap, dlq, count=1, timeout_s=10)
    record = orjson.loads(dead.value)
    assert record["reason"] == "undecodable" and record["service"] == "notifier"
    assert base64.b64decode(record["original_value_b64"]) == b"{not json"
    assert dead.key == b"bad-key"


async def test_a_burst_arrives_as_one_grouped_notification(
    stack_env, topics, notifier, webhook
) -> None:
    alerts, _ = topics
    hook = await webhook()
    notifier(urls=f"webhook+{hook.url}", group_wait_s="3")
    run = unique("r")
    await produce(
        stack_env["KAFKA_BOOTSTRAP_SERVERS"], alerts, [review_alert(i, run=run) for i in range(8)]
    )
    await wait_until(lambda: hook.received, timeout_s=30, what="the grouped notification")
    await asyncio.sleep(4)  # a second notification would have come by now
    [got] = hook.received
    data = got.json["data"]
    assert len(data["alerts"]) == 8
    assert data["title"] == "[CRITICAL] 8 × Negative review: Kettle (KTL-100)"


async def test_429_retry_after_a_hang_and_a_closed_connection_are_retried_until_delivered(
    stack_env, topics, notifier, webhook
) -> None:
    alerts, _ = topics
    throttled, hanging, closing = await webhook(), await webhook(), await webhook()
    throttled.mode, throttled.retry_after_s = Mode.THROTTLE, 3
    hanging.mode = Mode.HANG
    closing.mode = Mode.CLOSE
    notifier(
        urls=",".join(f"webhook+{h.url}" for h in (throttled, hanging, closing)),
        group_wait_s="0",
        timeout_s="1",
        backoff_base_s="0.3",
    )
    await produce(stack_env["KAFKA_BOOTSTRAP_SERVERS"], alerts, [review_alert(1, run=unique("r"))])
    await wait_until(
        lambda: throttled.attempts and hanging.attempts and closing.attempts >= 2,
        timeout_s=20,
        what="first attempts",
    )
    first_429 = throttled.attempt_times[0]
    throttled.mode = hanging.mode = closing.mode = Mode.OK
    await wait_until(
        lambda: throttled.received and hanging.received and closing.received,
        timeout_s=30,
        what="deliveries after recovery",
    )
    # Retry-After: 3 was honoured over the 0.3 s backoff
    assert throttled.received[0].at_s - first_429 >= 2.9
    for sink in (throttled, hanging, closing):
        assert len(set(sink.attempt_ids)) == 1, sink.attempt_ids  # one key for every attempt


async def test_a_receiver_that_keeps_failing_is_given_up_into_the_dlq(
    stack_env, topics, notifier, webhook
) -> None:
    alerts, dlq = topics
    failing = await webhook()
    failing.mode = Mode.FAIL
    notifier(
        urls=f"webhook+{failing.url}", group_wait_s="0", max_attempts="3", backoff_base_s="0.2"
    )
    alert = review_alert(1, run=unique("r"))
    await produce(stack_env["KAFKA_BOOTSTRAP_SERVERS"], alerts, [alert])
    [dead] = await read_topic(stack_env["KAFKA_BOOTSTRAP_SERVERS"], dlq, count=1, timeout_s=30)
    record = orjson.loads(dead.value)
    detail = orjson.loads(record["detail"])
    assert record["reason"] == "undeliverable"
    assert detail["receiver"] == "webhook-1" and detail["attempts"] == 3
    assert detail["last_error"].startswith("HTTP 500")
    assert (
        orjson.loads(base64.b64decode(record["original_value_b64"]))["alert_id"]
        == alert["alert_id"]
    )
    assert record["source_topic"] == alerts and failing.attempts == 3


def test_a_bad_routing_file_stops_start_up_naming_line_and_reason(
    stack_env, topics, tmp_path
) -> None:
    import subprocess
    import sys

    from notifier_harness import free_port, notifier_env

    routes = tmp_path / "routes.yaml"
    routes.write_text("route:\n  receivers: [team]\n  routes:\n    - match: {colour: red}\n")
    env = notifier_env(
        stack_env,
        topic=topics[0],
        dlq_topic=topics[1],
        port=free_port(),
        state_dir=tmp_path / "s",
        routing_file=str(routes),
    )
    result = subprocess.run(
        [sys.executable, "-m", "notifier"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert f"{routes}:4: route.routes.0.match" in result.stderr
    assert "unknown label(s) ['colour']" in result.stderr
