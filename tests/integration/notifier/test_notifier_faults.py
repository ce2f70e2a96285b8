"""kill -9 while notifications are in flight and one receiver is down: after the restart every
alert reaches every receiver, repeats carry the same idempotency key, and the healthy
receiver's latency does not depend on the dead one."""

from __future__ import annotations

import asyncio
import statistics

import pytest
from notifier.sinks import Mode
from notifier_harness import produce, review_alert, unique, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

GROUP_WAIT_S = 1.0


def alert_ids(sink) -> set[str]:  # type: ignore[no-untyped-def]
    return {a["alert_id"] for r in sink.received for a in r.json["data"]["alerts"]}


async def test_kill9_with_a_receiver_down_loses_nothing_and_repeats_keep_their_key(
    stack_env, topics, notifier, webhook, tmp_path
) -> None:
    alerts, _ = topics
    bootstrap = stack_env["KAFKA_BOOTSTRAP_SERVERS"]
    healthy, down = await webhook(), await webhook()
    down.mode = Mode.FAIL  # answers 500 to everything: down for the whole first phase
    settings = {
        "urls": f"webhook+{healthy.url},webhook+{down.url}",
        "group_wait_s": str(GROUP_WAIT_S),
        "backoff_base_s": "0.5",
        "backoff_max_s": "2",
        "timeout_s": "2",
    }
    state = tmp_path / "state"
    first = notifier(state_dir=state, **settings)
    run = unique("r")
    # Phase 1: 20 alerts at 10/s, each its own group (its own subject).
    batch1 = [review_alert(i, subject=f"product:{i}", run=run) for i in range(20)]
    sent_at: dict[str, float] = {}
    for alert in batch1:
        [t] = await produce(bootstrap, alerts, [alert])
        sent_at[alert["alert_id"]] = t
        await asyncio.sleep(0.1)
    await wait_until(lambda: len(alert_ids(healthy)) == 20, timeout_s=30, what="phase 1 on healthy")
    latency = [
        r.at_s - sent_at[a["alert_id"]] for r in healthy.received for a in r.json["data"]["alerts"]
    ]
    assert max(latency) <= GROUP_WAIT_S + 1.5, latency  # the dead receiver does not slow it
    # down: tried, then paused and probed one at a time (not once per queued notification)
    assert 3 <= down.attempts < 20 and not down.received
    keys_before = set(down.attempt_ids)

    # Phase 2: 20 more, then kill -9 inside their group_wait: queued, not yet sent.
    batch2 = [review_alert(i, subject=f"product:{i}", run=run + "b") for i in range(20)]
    await produce(bootstrap, alerts, batch2)
    await asyncio.sleep(0.3)
    first.kill9()
    healthy_before_restart = len(healthy.received)

    # The dead receiver stays down across the restart for a while, then recovers.
    second = notifier(state_dir=state, **settings)
    await asyncio.sleep(3)
    down.mode = Mode.OK
    everything = {a["alert_id"] for a in batch1 + batch2}
    await wait_until(
        lambda: alert_ids(healthy) >= everything and alert_ids(down) >= everything,
        timeout_s=90,
        what=f"all 40 alerts at both receivers (log: {second.log_path})",
    )
    # Repeats carry the key they were first tried with.
    delivered_keys = {r.headers["webhook-id"] for r in down.received}
    assert keys_before <= delivered_keys | set(down.attempt_ids)
    assert keys_before & delivered_keys == keys_before, "a phase-1 notification got a new key"
    by_key: dict[str, set[str]] = {}
    for sink in (healthy, down):
        for r in sink.received:
            ids = {a["alert_id"] for a in r.json["data"]["alerts"]}
            assert by_key.setdefault(r.headers["webhook-id"], ids) == ids  # same key, same alerts
    assert healthy_before_restart >= 20


async def test_healthy_receiver_latency_with_and_without_a_hung_one(
    stack_env, topics, notifier, webhook
) -> None:
    """Same run, same load: a receiver that never answers beside the healthy one changes the
    healthy one's median latency by less than 0.5 s."""
    alerts, _ = topics
    bootstrap = stack_env["KAFKA_BOOTSTRAP_SERVERS"]
    alone, beside, hung = await webhook(), await webhook(), await webhook()
    hung.mode = Mode.HANG
    settings = {"group_wait_s": "0.5", "timeout_s": "5"}
    notifier(urls=f"webhook+{alone.url}", group_id=unique("g1"), **settings)
    notifier(urls=f"webhook+{beside.url},webhook+{hung.url}", group_id=unique("g2"), **settings)
    await asyncio.sleep(2)
    run = unique("r")
    sent: dict[str, float] = {}
    for i in range(30):
        alert = review_alert(i, subject=f"product:{i}", run=run)
        [sent[alert["alert_id"]]] = await produce(bootstrap, alerts, [alert])
        await asyncio.sleep(0.05)
    await wait_until(
        lambda: len(alert_ids(alone)) == 30 and len(alert_ids(beside)) == 30,
        timeout_s=30,
        what="30 alerts at both healthy receivers",
    )

    def median(sink) -> float:  # type: ignore[no-untyped-def]
        return statistics.median(
            r.at_s - sent[a["alert_id"]] for r in sink.received for a in r.json["data"]["alerts"]
        )

    assert hung.attempts >= 1 and not hung.received
    assert abs(median(beside) - median(alone)) < 0.5, (median(alone), median(beside))
