"""An outbox of the SQLite era is carried into the journal on the first start of this version:
notifications not yet delivered, alerts waiting in groups, the dedup set, inhibitions and
silences. The database is written here as that version wrote it (its schema, its encodings)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
from notifier.outbox import Outbox
from notifier.silences import Matcher, SilenceRequest, new_silence
from notifier_factories import T0, review_alert
from servicekit.kafka import encode_event

# The tables and encodings of services/notifier/src/notifier/outbox.py before 2026-12-07.
LEGACY_SCHEMA = """
CREATE TABLE pending (receiver TEXT, alert_id TEXT, group_key TEXT, alert BLOB, source BLOB,
    enqueued_at REAL, PRIMARY KEY (receiver, alert_id));
CREATE TABLE pending_targets (rule INTEGER, equal_key TEXT, receiver TEXT, alert_id TEXT);
CREATE TABLE groups (receiver TEXT, group_key TEXT, group_labels BLOB, group_wait_s REAL,
    group_interval_s REAL, due_at REAL, last_flushed_at REAL, PRIMARY KEY (receiver, group_key));
CREATE TABLE seen (receiver TEXT, alert_id TEXT, expires_at REAL);
CREATE TABLE inhibitions (rule INTEGER, equal_key TEXT, until REAL);
CREATE TABLE notifications (key TEXT PRIMARY KEY, receiver TEXT, group_key TEXT,
    group_labels BLOB, alerts BLOB, first_enqueued_at REAL, created_at REAL,
    attempts INTEGER, next_attempt_at REAL, last_error TEXT);
CREATE TABLE silences (id TEXT PRIMARY KEY, doc BLOB, ends_at REAL);
"""


def source(offset: int) -> dict[str, object]:
    return {"topic": "alerts.v1", "partition": 0, "offset": offset, "key": "product:1"}


def write_legacy(path: Path) -> tuple[bytes, bytes, str]:
    sent, waiting = encode_event(review_alert(1)), encode_event(review_alert(2))
    silence = new_silence(
        SilenceRequest(matchers=[Matcher(name="kind", value="price_move")], duration_s=60), now=T0
    )
    db = sqlite3.connect(path)
    db.executescript(LEGACY_SCHEMA)
    labels = orjson.dumps({"kind": "negative_review", "subject": "product:1"})
    db.execute(
        "INSERT INTO notifications VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            "msg_old",
            "a",
            "g1",
            labels,
            orjson.dumps([{"alert": sent.decode(), "source": source(7)}]),
            100.0,
            100.0,
            2,
            150.0,
            "HTTP 500",
        ),
    )
    db.execute("INSERT INTO groups VALUES ('b', 'g1', ?, 2.0, 10.0, 102.0, NULL)", (labels,))
    db.execute(
        "INSERT INTO pending VALUES ('b', ?, 'g1', ?, ?, 100.0)",
        (review_alert(2).alert_id, waiting, orjson.dumps(source(8))),
    )
    db.execute(
        "INSERT INTO pending_targets VALUES (0, 'product:1', 'b', ?)", (review_alert(2).alert_id,)
    )
    db.execute("INSERT INTO seen VALUES ('b', ?, 9999.0)", (review_alert(2).alert_id,))
    db.execute("INSERT INTO inhibitions VALUES (0, 'product:9', 9999.0)")
    db.execute(
        "INSERT INTO silences VALUES (?, ?, ?)",
        (silence.id, silence.model_dump_json().encode(), silence.ends_at.timestamp()),
    )
    db.commit()
    db.close()
    return sent, waiting, silence.id


def test_a_sqlite_outbox_is_imported_once_and_nothing_in_it_is_lost(tmp_path: Path) -> None:
    sent, waiting, silence_id = write_legacy(tmp_path / "outbox.sqlite3")
    outbox = Outbox(tmp_path / "outbox.journal")
    assert not (tmp_path / "outbox.sqlite3").exists()
    assert (tmp_path / "outbox.sqlite3.imported").exists()
    # the first process, and a second reading the journal alone (the database is set aside)
    for reopened in (outbox, Outbox(tmp_path / "outbox.journal")):
        assert reopened.claim("a", now_s=149.0, limit=10) == []  # its retry time is kept
        [note] = reopened.claim("a", now_s=150.0, limit=10)
        assert (note.key, note.attempts, note.last_error) == ("msg_old", 2, "HTTP 500")
        assert [q.alert_json for q in note.alerts] == [sent]
        assert note.alerts[0].source.offset == 7 and note.alerts[0].source.key == b"product:1"
        assert reopened.next_due_s("b") == 102.0  # the waiting group keeps its due time
        assert reopened.flush_due_groups("b", now_s=102.0) == 1
        [flushed] = reopened.claim("b", now_s=102.0, limit=10)
        assert [q.alert_json for q in flushed.alerts] == [waiting]
        assert [s.id for s in reopened.silences()] == [silence_id]
    assert reopened._inhibitions == {(0, "product:9"): 9999.0}
    assert reopened._queues["b"].seen == {review_alert(2).alert_id: 9999.0}
