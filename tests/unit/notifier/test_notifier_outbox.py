"""The journaled outbox: grouping timing, replays, inhibition, idempotency keys, restarts,
torn writes and compaction."""

from __future__ import annotations

import heapq
import shutil
from pathlib import Path

import pytest
from contracts.events import AlertRaised
from notifier.labels import alert_labels
from notifier.outbox import Incoming, Outbox, Retry, SourceRef, notification_key
from notifier.routing import DEFAULT_INHIBIT, RouteConfig, Router, RoutingConfig
from notifier.silences import Matcher, SilenceRequest, new_silence
from notifier_factories import T0, burst_alert, move_alert, review_alert
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
    return Outbox(tmp_path / "outbox.journal")


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
    path = tmp_path / "outbox.journal"
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
    [note] = outbox.claim("a", now_s=102.0, limit=1)
    outbox.step("a", now_s=102.0, delivered=[note.key], limit=0)
    outbox.prune(now_s=113.0)
    assert outbox._queues["a"].groups == {}  # memory freed
    enqueue(outbox, r, [review_alert(2)], now_s=113.0)
    assert outbox.next_due_s("a") == 115.0  # group_wait from now, as for a group never seen


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


def state(outbox: Outbox, now_s: float) -> dict[str, object]:
    """What the outbox would do next per receiver, as a freshly started process sees it
    (nothing handed out): what it holds, when, and what it hands out."""
    out: dict[str, object] = {}
    for receiver in ("a", "b"):
        queue = outbox._queues[receiver]
        queue.claimed.clear()
        for key, at in queue.next_at.items():
            heapq.heappush(queue.ready, (at, 0, key))
        out[receiver] = (
            outbox.pending_count(receiver),
            outbox.next_due_s(receiver),
            sorted(
                (n.key, n.attempts, n.last_error, len(n.alerts))
                for n in outbox.claim(receiver, now_s=now_s, limit=100)
            ),
        )
    return out


def busy(outbox: Outbox, r: Router) -> None:
    """Queue, inhibit, flush, retry, deliver and silence: every kind of journal line."""
    enqueue(outbox, r, [review_alert(1), review_alert(2), move_alert()], now_s=100.0)
    enqueue(outbox, r, [review_alert(3, subject="product:3")], now_s=100.5)
    enqueue(outbox, r, [burst_alert()], now_s=101.0)  # drops the singles of product:1
    assert outbox.flush_due_groups("a", now_s=103.0) == 3  # move, product:3, the burst
    notes = outbox.claim("a", now_s=103.0, limit=10)
    outbox.step(
        "a",
        now_s=103.5,
        delivered=[notes[0].key],
        retries=[Retry(notes[1].key, 1, 140.0, "HTTP 503")],
        limit=0,
    )
    enqueue(outbox, r, [review_alert(4, subject="product:4")], now_s=103.0)
    request = SilenceRequest(matchers=[Matcher(name="kind", value="price_move")], duration_s=60)
    outbox.save_silence(new_silence(request, now=T0))


def test_a_reopened_journal_rebuilds_the_same_state(tmp_path: Path) -> None:
    r = router(wait=2.0, interval=10.0)
    first = Outbox(tmp_path / "outbox.journal")
    busy(first, r)
    before = state(first, now_s=200.0)
    first_silences = first.silences()
    assert len(first_silences) == 1
    del first  # no close: as after kill -9
    second = Outbox(tmp_path / "outbox.journal")
    assert state(second, now_s=200.0) == before
    assert second.silences() == first_silences
    # the dedup set and the inhibition came back too
    again = enqueue(second, r, [review_alert(4, subject="product:4"), review_alert(5)], 104.0)
    assert again.duplicate == {"a": 1, "b": 1} and again.inhibited == {"a": 1, "b": 1}


def test_a_torn_last_line_is_cut_off_and_the_journal_goes_on(tmp_path: Path) -> None:
    r = router(wait=0.0)
    path = tmp_path / "outbox.journal"
    first = Outbox(path)
    enqueue(first, r, [review_alert(1)], now_s=100.0)
    whole = path.stat().st_size
    with path.open("ab") as f:
        f.write(b'["q", 100.0, "review-product:1-2", "{"al')  # a write torn by a crash
    del first
    second = Outbox(path)
    assert path.stat().st_size == whole
    assert second.pending_count("a") == 1
    enqueue(second, r, [review_alert(2)], now_s=101.0)
    third = Outbox(path)
    assert third.pending_count("a") == 2


def test_compaction_keeps_the_state_and_survives_a_crash_at_each_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import notifier.outbox as outbox_module

    monkeypatch.setattr(outbox_module, "COMPACT_MIN_BYTES", 1)
    r = router(wait=2.0, interval=10.0)
    path = tmp_path / "state" / "outbox.journal"
    outbox = Outbox(path)
    busy(outbox, r)
    # many delivered notifications: a journal far longer than the live state
    for n in range(10, 60):
        enqueue(outbox, r, [review_alert(n, subject=f"product:{n}")], now_s=104.0)
    for receiver in ("a", "b"):
        outbox.flush_due_groups(receiver, now_s=106.0)
        done = [n.key for n in outbox.claim(receiver, now_s=106.0, limit=200)]
        live = done[:3]
        outbox.step(receiver, now_s=106.0, delivered=done[3:], limit=0)
        outbox.step(receiver, now_s=106.0, retries=[Retry(k, 1, 150.0, "x") for k in live], limit=0)
    before = state(outbox, now_s=200.0)
    grown = path.stat().st_size
    assert outbox.compact_if_due(now_s=106.0)
    # crash before the sync: the old journal is whole; the new file is complete and wins
    assert path.stat().st_size == grown and path.with_name("outbox.journal.new").exists()
    crashed = tmp_path / "crashed"  # the files as a kill -9 now would leave them
    crashed.mkdir()
    for name in ("outbox.journal", "outbox.journal.new"):
        shutil.copy(path.with_name(name), crashed / name)
    assert state(Outbox(crashed / "outbox.journal"), now_s=200.0) == before
    assert not (crashed / "outbox.journal.new").exists()  # it took the journal's place
    # a change after the switch lands in the new file, and the sync puts it in place
    enqueue(outbox, r, [review_alert(99, subject="product:99")], now_s=107.0)
    outbox.sync()
    assert not path.with_name("outbox.journal.new").exists()
    assert path.stat().st_size < grown / 2
    reopened = Outbox(path)
    assert reopened.pending_count("a") == outbox.pending_count("a")
    # the dedup set and the inhibition are in the snapshot
    again = enqueue(reopened, r, [review_alert(3, subject="product:3"), review_alert(5)], 108.0)
    assert again.duplicate == {"a": 1, "b": 1} and again.inhibited == {"a": 1, "b": 1}
    outbox.close()


def test_an_unfinished_compaction_is_ignored(tmp_path: Path) -> None:
    r = router(wait=2.0)
    path = tmp_path / "outbox.journal"
    outbox = Outbox(path)
    enqueue(outbox, r, [review_alert(1)], now_s=100.0)
    path.with_name("outbox.journal.new").write_bytes(b'["V", 1]\n["s", "x", "{}", 1.0]\n')
    reopened = Outbox(path)
    assert reopened.pending_count("a") == 1 and reopened.silences() == []
    assert not path.with_name("outbox.journal.new").exists()
