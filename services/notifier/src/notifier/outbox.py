"""The durable per-receiver outbox: SQLite in the state directory (a PVC in Kubernetes).

Why SQLite and not a Kafka retry topic: a receiver's queue must be readable by receiver and
due time (a dead receiver's backlog is skipped, not read past), grouped alerts must leave the
queue together with the notification that carries them, and the dedup set (`seen`) must be
updated in the same step. One local transaction does all three; Kafka would need a topic per
receiver plus a compacted state topic, and could not delete a delivered message.

Order of a consumed batch (notifier.Notifier.handle_batch):
  1. route each alert, 2. `enqueue` every destination in ONE transaction, 3. `sync` (fsync),
  4. then commit the Kafka offsets. A crash before 4 replays the batch; `seen` makes the replay
  a no-op. A crash after 4 loses nothing: the rows are on disk.
A notification row is deleted only after its receiver acknowledged it (or it went to the DLQ):
a crash in between re-sends it under the same key, which the receiver can drop.

Durability, precisely. WAL mode at synchronous=NORMAL: a COMMIT appends its frames to the
`-wal` file with write() and returns, without an fsync. Those frames are in the kernel's page
cache, so a committed transaction survives kill -9 of the process at once. A power loss (or
a kernel crash) can lose the transactions written since the last fsync of the WAL; `sync`
makes them durable, and the Notifier calls it (on its sync thread) before every Kafka commit,
so what Kafka forgets is always on disk. Between a commit and its sync, a power loss can
therefore lose: queued alerts whose offsets are not committed yet (Kafka replays them), and
dispatcher outcomes (delivered, retry later: the notification is re-sent under the same key).
Nothing acknowledged to Kafka is lost. Silences are synced before the API answers.

A dispatcher's outcomes (delivered, retry later) are written in one transaction per loop step
(`step`), not one per send.

Every method except `sync` and `checkpoint` runs on the event loop's thread (they are
microseconds; see notifier.OnLoop); those two run on the sync thread, one at a time.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import sqlite3
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from notifier.routing import Destination, InhibitRule
from notifier.silences import Silence

MAX_ALERTS_PER_NOTIFICATION = 100
WAL_KEEP_BYTES = 8 << 20  # a restarted WAL is cut back to this (journal_size_limit)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    receiver TEXT NOT NULL, alert_id TEXT NOT NULL, group_key TEXT NOT NULL,
    alert BLOB NOT NULL, source BLOB NOT NULL, enqueued_at REAL NOT NULL,
    PRIMARY KEY (receiver, alert_id)
);
CREATE INDEX IF NOT EXISTS pending_group ON pending (receiver, group_key, enqueued_at);
CREATE TABLE IF NOT EXISTS pending_targets (
    rule INTEGER NOT NULL, equal_key TEXT NOT NULL, receiver TEXT NOT NULL,
    alert_id TEXT NOT NULL, PRIMARY KEY (rule, equal_key, receiver, alert_id)
);
-- A flush forgets its alerts' target rows by (receiver, alert_id): without this index each
-- of those deletes scanned the table (bench/notifier: 260 us per alert with 6,000 rows).
CREATE INDEX IF NOT EXISTS pending_targets_alert ON pending_targets (receiver, alert_id);
CREATE TABLE IF NOT EXISTS groups (
    receiver TEXT NOT NULL, group_key TEXT NOT NULL, group_labels BLOB NOT NULL,
    group_wait_s REAL NOT NULL, group_interval_s REAL NOT NULL,
    due_at REAL, last_flushed_at REAL,  -- due_at: NULL while nothing waits in the group
    PRIMARY KEY (receiver, group_key)
);
CREATE INDEX IF NOT EXISTS groups_due ON groups (receiver, due_at);
CREATE TABLE IF NOT EXISTS seen (
    receiver TEXT NOT NULL, alert_id TEXT NOT NULL, expires_at REAL NOT NULL,
    PRIMARY KEY (receiver, alert_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS inhibitions (
    rule INTEGER NOT NULL, equal_key TEXT NOT NULL, until REAL NOT NULL,
    PRIMARY KEY (rule, equal_key)
);
CREATE TABLE IF NOT EXISTS notifications (
    key TEXT PRIMARY KEY, receiver TEXT NOT NULL, group_key TEXT NOT NULL,
    group_labels BLOB NOT NULL, alerts BLOB NOT NULL, first_enqueued_at REAL NOT NULL,
    created_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL, last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS notifications_due ON notifications (receiver, next_attempt_at);
CREATE TABLE IF NOT EXISTS silences (id TEXT PRIMARY KEY, doc BLOB NOT NULL, ends_at REAL NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class SourceRef:
    """Where an alert came from, for its DLQ record if it is given up on."""

    topic: str
    partition: int
    offset: int
    key: bytes | None


@dataclass(frozen=True, slots=True)
class Incoming:
    """A decoded alert and its destinations (silenced ones already removed)."""

    alert_id: str
    labels: dict[str, str]
    alert_json: bytes
    source: SourceRef
    destinations: Sequence[Destination]


@dataclass(slots=True)
class EnqueueResult:
    queued: dict[str, int] = field(default_factory=dict)
    duplicate: dict[str, int] = field(default_factory=dict)
    inhibited: dict[str, int] = field(default_factory=dict)
    receivers: set[str] = field(default_factory=set)  # whose queues changed

    def count(self, bucket: dict[str, int], receiver: str, n: int = 1) -> None:
        bucket[receiver] = bucket.get(receiver, 0) + n


@dataclass(slots=True)
class _EnqueueRows:
    """A batch's rows per table, written with one executemany each."""

    seen: list[tuple[Any, ...]] = field(default_factory=list)
    pending: list[tuple[Any, ...]] = field(default_factory=list)
    targets: list[tuple[Any, ...]] = field(default_factory=list)
    groups: list[tuple[Any, ...]] = field(default_factory=list)

    def clear(self) -> None:
        for rows in (self.seen, self.pending, self.targets, self.groups):
            rows.clear()


_IN_CHUNK = 500  # ids per `IN (...)` query (SQLite allows 32,766 variables; keep it modest)


@dataclass(frozen=True, slots=True)
class Retry:
    key: str
    attempts: int
    next_attempt_s: float
    error: str


@dataclass(frozen=True, slots=True)
class QueuedAlert:
    alert_json: bytes
    source: SourceRef


@dataclass(frozen=True, slots=True)
class Notification:
    key: str
    receiver: str
    group_key: str
    group_labels: dict[str, str]
    alerts: tuple[QueuedAlert, ...]
    first_enqueued_at: float
    attempts: int
    last_error: str


def notification_key(receiver: str, group_key: str, alert_ids: Iterable[str]) -> str:
    """The idempotency key (Standard Webhooks `webhook-id`): the same receiver, group and
    alerts always give the same key, so a re-send after a crash is recognisable."""
    text = "\x1f".join([receiver, group_key, *sorted(alert_ids)])
    return "msg_" + hashlib.sha256(text.encode()).hexdigest()[:32]


def _equal_key(rule: InhibitRule, labels: dict[str, str]) -> str:
    return "\x1f".join(labels.get(name, "") for name in rule.equal)


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _source_doc(source: SourceRef) -> bytes:
    return orjson.dumps(
        {
            "topic": source.topic,
            "partition": source.partition,
            "offset": source.offset,
            "key": None if source.key is None else source.key.decode("latin-1"),
        }
    )


def _source_from(doc: dict[str, Any]) -> SourceRef:
    key = doc.get("key")
    return SourceRef(
        topic=doc["topic"],
        partition=int(doc["partition"]),
        offset=int(doc["offset"]),
        key=None if key is None else str(key).encode("latin-1"),
    )


_NOTE_COLUMNS = "key, group_key, group_labels, alerts, first_enqueued_at, attempts, last_error"


def _note(receiver: str, row: Sequence[Any]) -> Notification:
    return Notification(
        key=row[0],
        receiver=receiver,
        group_key=row[1],
        group_labels=orjson.loads(row[2]),
        alerts=tuple(
            QueuedAlert(a["alert"].encode(), _source_from(a["source"]))
            for a in orjson.loads(row[3])
        ),
        first_enqueued_at=row[4],
        attempts=row[5],
        last_error=row[6],
    )


class Outbox:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        # WAL at NORMAL: no fsync in a COMMIT (see the module docstring; `sync` does it).
        # No automatic checkpoint either: it would fsync on the committing thread, the event
        # loop; `checkpoint` runs on the sync thread with its own connection instead.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA wal_autocheckpoint=0")
        self._db.execute(f"PRAGMA journal_size_limit={WAL_KEEP_BYTES}")
        self._db.executescript(_SCHEMA)
        self._wal = Path(f"{path}-wal")
        self._dir_synced = False
        self._checkpointer: sqlite3.Connection | None = None  # the sync thread's

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
        self._db.close()  # the last connection: SQLite checkpoints and removes the WAL

    def sync(self) -> None:
        """Make every transaction committed so far survive a power loss: fsync the WAL file
        (on Linux an fsync flushes the file's dirty pages whichever descriptor wrote them).
        Frames already checkpointed are in the database file, which the checkpoint fsync'd."""
        fd = os.open(self._wal, os.O_RDWR)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if not self._dir_synced:  # the WAL file's own directory entry, once
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
            self._dir_synced = True

    def checkpoint(self) -> None:
        """Copy the WAL into the database and fsync it (PASSIVE: the event loop's writes go
        on meanwhile; once all is copied the next writer restarts the WAL from its start).
        The Notifier calls it every few seconds while alerts arrive, and on its prune tick."""
        if self._checkpointer is None:
            self._checkpointer = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False
            )
            self._checkpointer.execute("PRAGMA synchronous=NORMAL")
        self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def waiting(self) -> int:
        """Notifications not yet delivered (at start-up: those a crash left behind)."""
        return int(self._db.execute("SELECT COUNT(*) FROM notifications").fetchone()[0])

    # --- consumer side --------------------------------------------------------------------

    def enqueue(
        self, batch: Sequence[Incoming], *, rules: Sequence[InhibitRule], now_s: float
    ) -> EnqueueResult:
        """Queue a batch's destinations in one transaction; durable across a power loss once
        `sync` has returned (see the module docstring).

        The rows are written with one `executemany` per table, not four statements per
        destination: the dedup set is read once per receiver for the whole batch, and an
        inhibition source (rare) first writes the rows before it, so its drop sees them."""
        result = EnqueueResult()
        with self._transaction():
            rows = _EnqueueRows()
            seen = self._seen_already(batch, now_s=now_s)
            active: dict[tuple[int, str], bool] = {}  # inhibitions read in this batch
            for item in batch:
                if any(_matches(rule.source, item.labels) for rule in rules):
                    self._write(rows)
                    self._inhibit_by(item, rules=rules, now_s=now_s, result=result)
                    active.clear()
                targets = [
                    (index, _equal_key(rule, item.labels))
                    for index, rule in enumerate(rules)
                    if _matches(rule.target, item.labels)
                ]
                if any(self._inhibited(target, now_s=now_s, active=active) for target in targets):
                    for dest in item.destinations:
                        result.count(result.inhibited, dest.receiver)
                    continue
                self._queue(item, targets, rows=rows, seen=seen, now_s=now_s, result=result)
            self._write(rows)
        return result

    def _seen_already(self, batch: Sequence[Incoming], *, now_s: float) -> set[tuple[str, str]]:
        """(receiver, alert_id) pairs of this batch still in the dedup set."""
        ids: dict[str, set[str]] = {}
        for item in batch:
            for dest in item.destinations:
                ids.setdefault(dest.receiver, set()).add(item.alert_id)
        found: set[tuple[str, str]] = set()
        for receiver, alert_ids in ids.items():
            ordered = sorted(alert_ids)
            for start in range(0, len(ordered), _IN_CHUNK):
                chunk = ordered[start : start + _IN_CHUNK]
                marks = ",".join("?" * len(chunk))
                found.update(
                    (receiver, row[0])
                    for row in self._db.execute(
                        "SELECT alert_id FROM seen WHERE receiver = ? AND expires_at > ?"  # noqa: S608  # only ? marks
                        f" AND alert_id IN ({marks})",
                        (receiver, now_s, *chunk),
                    )
                )
        return found

    def _inhibit_by(
        self, item: Incoming, *, rules: Sequence[InhibitRule], now_s: float, result: EnqueueResult
    ) -> None:
        """This alert as an inhibition source: remember it, drop its pending targets."""
        db = self._db
        for index, rule in enumerate(rules):
            if not _matches(rule.source, item.labels):
                continue
            key = _equal_key(rule, item.labels)
            db.execute(
                "INSERT INTO inhibitions VALUES (?, ?, ?) ON CONFLICT (rule, equal_key)"
                " DO UPDATE SET until = MAX(until, excluded.until)",
                (index, key, now_s + rule.duration_s),
            )
            held = db.execute(
                "SELECT receiver, alert_id FROM pending_targets WHERE rule = ? AND equal_key = ?",
                (index, key),
            ).fetchall()
            for receiver, alert_id in held:
                deleted = db.execute(
                    "DELETE FROM pending WHERE receiver = ? AND alert_id = ?", (receiver, alert_id)
                ).rowcount
                if deleted:
                    result.count(result.inhibited, receiver)
                    result.count(result.queued, receiver, -1)
                    result.receivers.add(receiver)
            db.execute("DELETE FROM pending_targets WHERE rule = ? AND equal_key = ?", (index, key))

    def _inhibited(
        self, target: tuple[int, str], *, now_s: float, active: dict[tuple[int, str], bool]
    ) -> bool:
        """Whether an inhibition holds this target back; read once per key and batch."""
        if target not in active:
            active[target] = (
                self._db.execute(
                    "SELECT 1 FROM inhibitions WHERE rule = ? AND equal_key = ? AND until > ?",
                    (*target, now_s),
                ).fetchone()
                is not None
            )
        return active[target]

    @staticmethod
    def _queue(
        item: Incoming,
        targets: Sequence[tuple[int, str]],
        *,
        rows: _EnqueueRows,
        seen: set[tuple[str, str]],
        now_s: float,
        result: EnqueueResult,
    ) -> None:
        """Once per receiver; `seen` drops a replay or a repeat within repeat_interval."""
        for dest in item.destinations:
            pair = (dest.receiver, item.alert_id)
            if pair in seen:
                result.count(result.duplicate, dest.receiver)
                continue
            seen.add(pair)  # a repeat later in the same batch is a duplicate too
            rows.seen.append((*pair, now_s + dest.grouping.repeat_interval_s))
            rows.pending.append(
                (*pair, dest.group_key, item.alert_json, _source_doc(item.source), now_s)
            )
            rows.targets.extend((index, key, *pair) for index, key in targets)
            rows.groups.append(
                (
                    dest.receiver,
                    dest.group_key,
                    orjson.dumps(dict(dest.group_labels)),
                    dest.grouping.group_wait_s,
                    dest.grouping.group_interval_s,
                    now_s + dest.grouping.group_wait_s,
                )
            )
            result.count(result.queued, dest.receiver)
            result.receivers.add(dest.receiver)

    def _write(self, rows: _EnqueueRows) -> None:
        db = self._db
        db.executemany(
            "INSERT INTO seen VALUES (?, ?, ?) ON CONFLICT (receiver, alert_id) DO UPDATE"
            " SET expires_at = excluded.expires_at",
            rows.seen,
        )
        db.executemany("INSERT OR IGNORE INTO pending VALUES (?, ?, ?, ?, ?, ?)", rows.pending)
        db.executemany("INSERT OR IGNORE INTO pending_targets VALUES (?, ?, ?, ?)", rows.targets)
        # A group with nothing waiting becomes due group_wait from now, but not before
        # group_interval after its last notification; one already waiting keeps its time.
        db.executemany(
            "INSERT INTO groups VALUES (?, ?, ?, ?, ?, ?, NULL)"
            " ON CONFLICT (receiver, group_key) DO UPDATE SET"
            " due_at = COALESCE(groups.due_at, MAX(excluded.due_at,"
            "   COALESCE(groups.last_flushed_at + excluded.group_interval_s, 0))),"
            " group_wait_s = excluded.group_wait_s,"
            " group_interval_s = excluded.group_interval_s",
            rows.groups,
        )
        rows.clear()

    # --- dispatcher side ------------------------------------------------------------------

    def step(
        self,
        receiver: str,
        *,
        now_s: float,
        delivered: Sequence[str] = (),
        retries: Sequence[Retry] = (),
        exclude: Collection[str] = (),
        limit: int,
    ) -> tuple[list[Notification], float | None]:
        """One dispatcher step in one call: 1. record outcomes, 2. turn due groups into
        notifications, 3. hand out up to `limit` due notifications not in `exclude` (the ones
        in flight), 4. say when the next one is due."""
        due = self._due_group(receiver, now_s=now_s)
        if delivered or retries or due:
            # One transaction for both: a commit writes every page it touched to the WAL.
            with self._transaction():
                self._settle_rows(delivered, retries)
                if due:
                    self._flush_rows(receiver, now_s=now_s)
        claimed = self._claim(receiver, now_s=now_s, exclude=exclude, limit=limit)
        return claimed, self.next_due_s(receiver, exclude=exclude)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _settle(self, delivered: Sequence[str], retries: Sequence[Retry]) -> None:
        with self._transaction():
            self._settle_rows(delivered, retries)

    def _settle_rows(self, delivered: Sequence[str], retries: Sequence[Retry]) -> None:
        db = self._db
        if delivered:
            db.executemany("DELETE FROM notifications WHERE key = ?", [(k,) for k in delivered])
        if retries:
            db.executemany(
                "UPDATE notifications SET attempts = ?, next_attempt_at = ?, last_error = ?"
                " WHERE key = ?",
                [(r.attempts, r.next_attempt_s, r.error[:2000], r.key) for r in retries],
            )

    def _due_group(self, receiver: str, *, now_s: float) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM groups WHERE receiver = ? AND due_at <= ? LIMIT 1", (receiver, now_s)
        ).fetchone()
        return row is not None

    def flush_due_groups(self, receiver: str, *, now_s: float) -> int:
        """Turn every group whose wait is over into notification rows; returns how many.
        One transaction and a fixed number of statements whatever the number of groups."""
        with self._transaction():
            return self._flush_rows(receiver, now_s=now_s)

    def _flush_rows(self, receiver: str, *, now_s: float) -> int:
        db = self._db
        made: list[tuple[Any, ...]] = []
        rows = db.execute(
            "SELECT g.group_key, g.group_labels, p.alert_id, p.alert, p.source, p.enqueued_at"
            " FROM groups g JOIN pending p"
            "   ON p.receiver = g.receiver AND p.group_key = g.group_key"
            " WHERE g.receiver = ? AND g.due_at <= ?"
            " ORDER BY g.group_key, p.enqueued_at, p.alert_id",
            (receiver, now_s),
        ).fetchall()
        for (group_key_, labels), grouped in itertools.groupby(rows, key=lambda r: r[:2]):
            members = list(grouped)
            for start in range(0, len(members), MAX_ALERTS_PER_NOTIFICATION):
                chunk = members[start : start + MAX_ALERTS_PER_NOTIFICATION]
                alerts = [
                    {"alert": bytes(r[3]).decode(), "source": orjson.loads(r[4])} for r in chunk
                ]
                made.append(
                    (
                        notification_key(receiver, group_key_, (r[2] for r in chunk)),
                        receiver,
                        group_key_,
                        labels,
                        orjson.dumps(alerts),
                        min(r[5] for r in chunk),
                        now_s,
                        now_s,
                    )
                )
        db.executemany(
            "INSERT OR IGNORE INTO notifications (key, receiver, group_key,"
            " group_labels, alerts, first_enqueued_at, created_at, next_attempt_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            made,
        )
        db.executemany(
            "DELETE FROM pending WHERE receiver = ? AND alert_id = ?",
            [(receiver, r[2]) for r in rows],
        )
        db.executemany(
            "DELETE FROM pending_targets WHERE receiver = ? AND alert_id = ?",
            [(receiver, r[2]) for r in rows],
        )
        # The same due set as the SELECT above: one transaction, one writer.
        db.execute(
            "UPDATE groups SET due_at = NULL, last_flushed_at = ?"
            " WHERE receiver = ? AND due_at <= ?",
            (now_s, receiver, now_s),
        )
        return len(made)

    def next_due_s(self, receiver: str, *, exclude: Collection[str] = ()) -> float | None:
        """When this receiver next has work: a group to flush or a notification to (re)send."""
        group = self._db.execute(
            "SELECT MIN(due_at) FROM groups WHERE receiver = ? AND due_at IS NOT NULL",
            (receiver,),
        ).fetchone()[0]
        # The earliest notification not in flight: skip past at most len(exclude) rows.
        rows = self._db.execute(
            "SELECT key, next_attempt_at FROM notifications WHERE receiver = ?"
            " ORDER BY next_attempt_at LIMIT ?",
            (receiver, len(exclude) + 1),
        ).fetchall()
        send = next((at for key, at in rows if key not in exclude), None)
        times = [t for t in (group, send) if t is not None]
        return min(times) if times else None

    def older_than(
        self, receiver: str, *, before_s: float, exclude: Collection[str], limit: int
    ) -> list[Notification]:
        """Notifications first queued before `before_s` (past their max age)."""
        rows = self._db.execute(
            f"SELECT {_NOTE_COLUMNS} FROM notifications"  # noqa: S608  # constant columns
            " WHERE receiver = ? AND first_enqueued_at < ? LIMIT ?",
            (receiver, before_s, limit + len(exclude)),
        ).fetchall()
        # Parsed only when handed out: the rows in flight are skipped by key first.
        return [_note(receiver, r) for r in [r for r in rows if r[0] not in exclude][:limit]]

    def claim(self, receiver: str, *, now_s: float, limit: int) -> list[Notification]:
        """Due notifications of one receiver (tests; the dispatcher uses `step`)."""
        return self._claim(receiver, now_s=now_s, exclude=(), limit=limit)

    def _claim(
        self, receiver: str, *, now_s: float, exclude: Collection[str], limit: int
    ) -> list[Notification]:
        if limit <= 0:
            return []
        rows = self._db.execute(
            f"SELECT {_NOTE_COLUMNS} FROM notifications"  # noqa: S608  # constant columns
            " WHERE receiver = ? AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?",
            (receiver, now_s, limit + len(exclude)),
        ).fetchall()
        # Parsed only when handed out: the rows in flight are skipped by key first.
        return [_note(receiver, r) for r in [r for r in rows if r[0] not in exclude][:limit]]

    def delivered(self, key: str) -> None:
        self._settle([key], ())

    def retry_later(self, key: str, *, attempts: int, next_attempt_s: float, error: str) -> None:
        self._settle((), [Retry(key, attempts, next_attempt_s, error)])

    def pending_count(self, receiver: str) -> int:
        alerts = self._db.execute(
            "SELECT COUNT(*) FROM pending WHERE receiver = ?", (receiver,)
        ).fetchone()[0]
        notes = self._db.execute(
            "SELECT COUNT(*) FROM notifications WHERE receiver = ?", (receiver,)
        ).fetchone()[0]
        return int(alerts) + int(notes)

    def prune(self, *, now_s: float) -> None:
        """Forget expired dedup entries, idle groups, inhibitions and silences."""
        self._db.execute("DELETE FROM seen WHERE expires_at <= ?", (now_s,))
        # An idle group past its interval behaves exactly like a new one: drop it.
        self._db.execute(
            "DELETE FROM groups WHERE due_at IS NULL AND last_flushed_at + group_interval_s < ?",
            (now_s,),
        )
        self._db.execute("DELETE FROM inhibitions WHERE until <= ?", (now_s,))
        self._db.execute("DELETE FROM silences WHERE ends_at <= ?", (now_s - 7 * 86400,))

    # --- silences -------------------------------------------------------------------------

    def save_silence(self, silence: Silence) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO silences VALUES (?, ?, ?)",
            (silence.id, silence.model_dump_json().encode(), silence.ends_at.timestamp()),
        )

    def silences(self) -> list[Silence]:
        rows = self._db.execute("SELECT doc FROM silences ORDER BY ends_at").fetchall()
        return [Silence.model_validate_json(r[0]) for r in rows]
