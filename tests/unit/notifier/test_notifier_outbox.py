"""The SQLite outbox: grouping timing, replays, inhibition, idempotency keys, restarts."""

from __future__ import annotations

from pathlib import Path

import pytest
from contracts.events import AlertRaised
from notifier.labels import alert_labels
from notifier.outbox import Incoming, Outbox, SourceRef, notification_key
from notifier.routing import DEFAULT_INHIBIT, RouteConfig, Router, RoutingConfig
from notifier_factories import burst_alert, move_alert, review_alert
from servicekit.kafka import encode_event


def router(**grouping: float) -> Router:
    route = RouteConfig(
        receivers=["a", "b"],
        group_by=["kind", "subject"],
        group_wait_s=grouping.get("wait", 2.0),
        group_interval_s=grouping.get("interval", 10.0),
        repeat_interval_s=grouping.get("repeat", 3600.0),
    )
    return Router(RoutingConfig(route=route, inhibit_rules=[DEFAULT_INHIBIT]), receiver_names=[])


def incoming(alert: AlertRaised, r: Router, offset: int = 0) -> Incoming:
    labels = alert_labels(alert)
    return Incoming(
        alert_id=alert.alert_id,
        labels=labels,
        alert_json=encode_event(alert),
        source=SourceRef("alerts.v1", 0, offset, alert.subject.encode()),
        destinations=r.destinations(labels),
    )


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    return Outbox(tmp_path / "outbox.sqlite3")


def enqueue(outbox: Outbox, r: Router, alerts: list[AlertRaised], now_s: float):  # type: ignore[no-untyped-def]
    batch = [incoming(a, r, i) for i, a in enumerate(alerts)]
    return outbox.enqueue(batch, rules=r.inhibit_rules, now_s=now_s)


def test_a_group_waits_group_wait_then_becomes_one_notification(outbox: Outbox) -> None:
    r = router(wait=2.0)
    enqueue(outbox, r, [review_alert(1), review_alert(2), review_alert(3)], now_s=100.0)
    assert outbox.flush_due_groups("a", now_s=101.9) == 0
    assert outbox.next_due_s("a") == pytest.approx(102.0)
    assert outbox.flush_due_groups("a", now_s=102.0) == 1
    [note] = outbox.claim("a", now_s=102.0, limit=10)
    assert len(note.alerts) == 3
    assert note.key == notification_key(
        "a", note.group_key, [f"review-product:1-{i}" for i in (1, 2, 3)]
    )
    # receiver b has its own queue: still there, untouched by a's claim
    assert outbox.flush_due_groups("b", now_s=102.0) == 1
    assert len(outbox.claim("b", now_s=102.0, limit=10)[0].alerts) == 3


def test_later_alerts_of_a_flushed_group_wait_group_interval(outbox: Outbox) -> None:
    r = router(wait=2.0, interval=10.0)
    enqueue(outbox, r, [review_alert(1)], now_s=100.0)
    outbox.flush_due_groups("a", now_s=102.0)
    enqueue(outbox, r, [review_alert(2)], now_s=103.0)
    assert outbox.flush_due_groups("a", now_s=105.0) == 0  # group_wait alone would say 105
    assert outbox.flush_due_groups("a", now_s=112.0) == 1


def test_a_replayed_alert_is_not_queued_twice_until_repeat_interval(outbox: Outbox) -> None:
    r = router(repeat=60.0)
    first = enqueue(outbox, r, [review_alert(1)], now_s=100.0)
    again = enqueue(outbox, r, [review_alert(1)], now_s=101.0)
    assert first.queued == {"a": 1, "b": 1}
    assert again.duplicate == {"a": 1, "b": 1} and not again.queued
    outbox.prune(now_s=161.0)
    later = enqueue(outbox, r, [review_alert(1)], now_s=161.0)
    assert later.queued == {"a": 1, "b": 1}


def test_burst_drops_pending_single_reviews_and_holds_new_ones(outbox: Outbox) -> None:
    r = router()
    enqueue(
        outbox, r, [review_alert(1), review_alert(2), review_alert(9, subject="product:9")], 100.0
    )
    result = enqueue(outbox, r, [burst_alert()], now_s=101.0)
    assert result.inhibited == {"a": 2, "b": 2}
    held = enqueue(outbox, r, [review_alert(3)], now_s=102.0)
    assert held.inhibited == {"a": 1, "b": 1} and not held.queued
    outbox.flush_due_groups("a", now_s=200.0)
    notes = outbox.claim("a", now_s=200.0, limit=10)
    kinds = sorted(
        AlertRaised.model_validate_json(q.alert_json).alert_id for n in notes for q in n.alerts
    )
    # the burst itself and the other product's review are still delivered
    assert kinds == ["burst-product:1", "review-product:9-9"]
    # after the inhibition's duration, singles flow again
    after = enqueue(outbox, r, [review_alert(4)], now_s=101.0 + DEFAULT_INHIBIT.duration_s + 1)
    assert after.queued == {"a": 1, "b": 1}


def test_inhibition_leaves_market_alerts_alone(outbox: Outbox) -> None:
    r = router()
    enqueue(outbox, r, [burst_alert()], now_s=100.0)
    assert enqueue(outbox, r, [move_alert()], now_s=101.0).queued == {"a": 1, "b": 1}


def test_rows_survive_a_reopen_and_unsettled_ones_are_sent_again(tmp_path: Path) -> None:
    r = router(wait=0.0)
    path = tmp_path / "outbox.sqlite3"
    first = Outbox(path)
    enqueue(first, r, [review_alert(1)], now_s=100.0)
    first.flush_due_groups("a", now_s=100.0)
    [claimed] = first.claim("a", now_s=100.0, limit=10)
    # in flight: a step that excludes it hands out nothing, and says nothing else is due
    assert first.step("a", now_s=100.0, exclude={claimed.key}, limit=10) == ([], None)
    del first  # no close: as after kill -9, before the outcome was written
    second = Outbox(path)
    assert second.waiting() == 1
    [again] = second.claim("a", now_s=100.0, limit=10)
    assert again.key == claimed.key
    second.step("a", now_s=100.0, delivered=[again.key], limit=0)
    assert second.pending_count("a") == 0
    assert second.pending_count("b") == 1  # b's alert still waits for its group


def test_idle_groups_are_pruned_and_behave_like_new_ones(outbox: Outbox) -> None:
    r = router(wait=2.0, interval=10.0)
    enqueue(outbox, r, [review_alert(1)], now_s=100.0)
    outbox.flush_due_groups("a", now_s=102.0)
    outbox.prune(now_s=113.0)
    assert outbox._db.execute("SELECT COUNT(*) FROM groups WHERE receiver='a'").fetchone()[0] == 0
    enqueue(outbox, r, [review_alert(2)], now_s=113.0)
    due = outbox._db.execute("SELECT due_at FROM groups WHERE receiver = 'a'").fetchone()[0]
    assert due == 115.0  # group_wait from now, as for a group never seen


def test_retry_later_keeps_attempts_and_error_and_waits(outbox: Outbox) -> None:
    r = router(wait=0.0)
    enqueue(outbox, r, [move_alert()], now_s=100.0)
    outbox.flush_due_groups("a", now_s=100.0)
    [note] = outbox.claim("a", now_s=100.0, limit=1)
    outbox.retry_later(note.key, attempts=1, next_attempt_s=130.0, error="HTTP 500")
    assert outbox.claim("a", now_s=129.0, limit=1) == []
    assert outbox.next_due_s("a") == 130.0
    [again] = outbox.claim("a", now_s=130.0, limit=1)
    assert (again.attempts, again.last_error) == (1, "HTTP 500")


def test_a_replay_within_one_batch_is_queued_once(outbox: Outbox) -> None:
    r = router()
    result = enqueue(outbox, r, [review_alert(1), review_alert(1)], now_s=100.0)
    assert result.queued == {"a": 1, "b": 1} and result.duplicate == {"a": 1, "b": 1}


def test_a_burst_later_in_the_same_batch_drops_the_singles_before_it(outbox: Outbox) -> None:
    r = router()
    result = enqueue(outbox, r, [review_alert(1), burst_alert(), review_alert(2)], now_s=100.0)
    # single 1 was queued, then dropped by the burst; single 2 was held back on arrival
    assert result.inhibited == {"a": 2, "b": 2}
    assert outbox.flush_due_groups("a", now_s=200.0) == 1  # the burst's own group only


def test_checkpoint_moves_committed_rows_into_the_database_file(tmp_path: Path) -> None:
    """Commits run at synchronous=NORMAL with no automatic checkpoint: `sync` makes them
    durable (fsync of the WAL) and `checkpoint` copies them into the database file."""
    import shutil
    import sqlite3

    path = tmp_path / "outbox.sqlite3"
    outbox = Outbox(path)
    enqueue(outbox, router(), [review_alert(1)], now_s=100.0)
    outbox.sync()
    copy = tmp_path / "copy.sqlite3"
    shutil.copy(path, copy)  # the database file alone, without its WAL
    tables = sqlite3.connect(copy).execute("SELECT name FROM sqlite_master").fetchall()
    assert tables == []  # all still in the WAL: no checkpoint ran on the committing thread
    outbox.checkpoint()
    shutil.copy(path, copy)
    assert sqlite3.connect(copy).execute("SELECT COUNT(*) FROM pending").fetchone()[0] == 2
    outbox.close()
