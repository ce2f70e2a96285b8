"""Carry an outbox of the SQLite era (`outbox.sqlite3`, until 2026-12-07) into the journal.

An upgraded notifier finds the old database in its state directory with notifications not yet
delivered, alerts waiting in their groups, the dedup set, inhibitions and silences; Kafka's
offsets for those alerts are committed, so they exist nowhere else. `snapshot_lines` reads
them (SQLite replays its own WAL on open) as the journal's snapshot lines; `Outbox` writes
them as its first journal and renames the database to `outbox.sqlite3.imported`.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

LEGACY_NAME = "outbox.sqlite3"


def _source(doc: bytes | str | dict[str, Any]) -> list[Any]:
    source = doc if isinstance(doc, dict) else orjson.loads(doc)
    return [source["topic"], source["partition"], source["offset"], source.get("key")]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def snapshot_lines(db_path: Path, *, version: int) -> list[list[Any]]:
    """The database's state as journal operations, in snapshot order (see outbox._snapshot)."""
    db = sqlite3.connect(db_path)
    try:
        ops: list[list[Any]] = [["V", version]]
        for sid, doc, ends_at in db.execute("SELECT id, doc, ends_at FROM silences"):
            ops.append(["s", sid, _text(doc), ends_at])
        for rule, key, until in db.execute("SELECT rule, equal_key, until FROM inhibitions"):
            ops.append(["i", rule, key, until])
        targets: dict[tuple[str, str], list[list[Any]]] = defaultdict(list)
        for rule, key, receiver, alert_id in db.execute(
            "SELECT rule, equal_key, receiver, alert_id FROM pending_targets"
        ):
            targets[(receiver, alert_id)].append([rule, key])
        for receiver, group_key, labels, wait_s, interval_s, due_at, flushed_at in db.execute(
            "SELECT receiver, group_key, group_labels, group_wait_s, group_interval_s, due_at,"
            " last_flushed_at FROM groups"
        ):
            ops.append(
                [
                    "G",
                    receiver,
                    group_key,
                    orjson.loads(labels),
                    wait_s,
                    interval_s,
                    due_at,
                    flushed_at,
                ]
            )
        known_groups = {(op[1], op[2]) for op in ops if op[0] == "G"}
        for receiver, alert_id, group_key, alert, source, at in db.execute(
            "SELECT receiver, alert_id, group_key, alert, source, enqueued_at FROM pending"
            " ORDER BY enqueued_at"
        ):
            if (receiver, group_key) not in known_groups:  # cannot happen; never lose the alert
                ops.append(["G", receiver, group_key, {}, 0.0, 0.0, at, None])
                known_groups.add((receiver, group_key))
            ops.append(
                [
                    "A",
                    receiver,
                    group_key,
                    alert_id,
                    _text(alert),
                    _source(source),
                    at,
                    targets.get((receiver, alert_id), []),
                ]
            )
        for row in db.execute(
            "SELECT receiver, key, group_key, group_labels, alerts, first_enqueued_at, attempts,"
            " next_attempt_at, last_error FROM notifications ORDER BY created_at"
        ):
            receiver, key, group_key, labels, alerts, first_at, attempts, next_at, error = row
            queued = [[a["alert"], _source(a["source"])] for a in orjson.loads(alerts)]
            ops.append(
                [
                    "N",
                    receiver,
                    key,
                    group_key,
                    orjson.loads(labels),
                    queued,
                    first_at,
                    attempts,
                    next_at,
                    error,
                ]
            )
        seen: dict[str, list[list[Any]]] = defaultdict(list)
        for receiver, alert_id, until in db.execute(
            "SELECT receiver, alert_id, expires_at FROM seen"
        ):
            seen[receiver].append([alert_id, until])
        for receiver, entries in seen.items():
            for start in range(0, len(entries), 10_000):
                ops.append(["Z", receiver, entries[start : start + 10_000]])
        ops.append(["E"])
        return ops
    finally:
        db.close()
