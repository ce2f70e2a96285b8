"""The durable per-receiver outbox: state in memory, every change appended to a journal file in
the state directory (a PVC in Kubernetes), replayed at start-up.

Why a journal and not a database: the outbox's reads (a receiver's due groups, its due
notifications, the dedup set) are all by receiver and time, which dicts and heaps answer in
microseconds; what must survive a crash is only the sequence of changes. Appending one line
per change costs a write() per consumed batch and per dispatcher step, where the SQLite outbox
before it spent ~130 us of CPU per alert in B-tree inserts and deletes and index upkeep
(bench/notifier/own_cpu.py, 2026-12-07: more than half of the notifier's own work).
Why not a Kafka retry topic: a dead receiver's backlog must be skipped, not read past, grouped
alerts must leave together with the notification that carries them, and a delivered message
must be forgotten; the journal is local and each of those is one line.

Order of a consumed batch (notifier.Notifier.handle_batch):
  1. route each alert, 2. `enqueue` every destination (one journal write for the batch),
  3. `sync` (fsync, on the sync thread), 4. then commit the Kafka offsets. A crash before 4
  replays the batch; the dedup set (`seen`) makes the replay a no-op. A crash after 4 loses
  nothing: the lines are on disk.
A notification is forgotten only after its receiver acknowledged it (or it went to the DLQ):
a crash in between re-sends it under the same key, which the receiver can drop.

Durability, precisely. A change is written to the journal with write() before `enqueue` or
`step` returns, without an fsync: the bytes are in the kernel's page cache, so they survive
kill -9 of the process at once. A power loss (or a kernel crash) can lose what was written
since the last fsync; `sync` makes it durable, and the Notifier calls it before every Kafka
commit, so what Kafka forgets is always on disk. Between a write and its sync a power loss can
therefore lose: queued alerts whose offsets are not committed yet (Kafka replays them), and
dispatcher outcomes (delivered, retry later: the notification is re-sent under the same key).
A torn last line (power loss mid-write) is cut off at start-up, with a warning.

Replay. Every journal line is an operation with its inputs (queue these alerts at time t,
flush this receiver's due groups at time t, these notifications were delivered, ...) and
start-up re-applies them in order through the same code that applied them live, so the
state rebuilt is the state that was. Expiry (dedup entries, idle groups, inhibitions, old
silences) is checked where it is read, so `prune` only frees memory and is not journaled.

Compaction. When the journal has grown past COMPACT_MIN_BYTES and COMPACT_RATIO times its last
snapshot, `compact_if_due` writes the live state as a snapshot to `<journal>.new` and appends
there from then on; the next `sync` fsyncs it and renames it over the journal. A crash in
between leaves both: at start-up `<journal>.new` wins if its snapshot is complete (it ends
with an end-of-snapshot line), else it is deleted and the old journal, still whole, is read.

Every method except `sync` runs on the event loop's thread; `sync` runs on the sync thread and
only fsyncs, renames and closes file descriptors, under a lock shared with the one method
that switches them (`compact_if_due`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import heapq
import itertools
import logging
import os
import threading
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from contracts.events import AlertRaised

from notifier.outbox_import import LEGACY_NAME, snapshot_lines
from notifier.routing import Destination, InhibitRule
from notifier.silences import Silence

log = logging.getLogger(__name__)

MAX_ALERTS_PER_NOTIFICATION = 100
COMPACT_MIN_BYTES = 16 << 20  # a journal smaller than this is never compacted…
COMPACT_RATIO = 4  # …nor one under this multiple of its last snapshot
JOURNAL_VERSION = 1
_SILENCE_KEPT_S = 7 * 86400.0  # an expired silence is still listed this long


class OutboxError(RuntimeError):
    """The journal cannot be written or read: the service must stop (a restart replays)."""


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ is ~3x slower
class SourceRef:
    """Where an alert came from, for its DLQ record if it is given up on."""

    topic: str
    partition: int
    offset: int
    key: bytes | None


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ is ~3x slower
class Incoming:
    """A decoded alert and its destinations (silenced ones already removed)."""

    alert_id: str
    labels: dict[str, str]
    alert_json: bytes
    source: SourceRef
    destinations: Sequence[Destination]
    alert: AlertRaised | None = None  # decoded already: kept beside the bytes while queued


@dataclass(slots=True)
class EnqueueResult:
    queued: dict[str, int] = field(default_factory=dict)
    duplicate: dict[str, int] = field(default_factory=dict)
    inhibited: dict[str, int] = field(default_factory=dict)
    receivers: set[str] = field(default_factory=set)  # whose queues changed

    def count(self, bucket: dict[str, int], receiver: str, n: int = 1) -> None:
        bucket[receiver] = bucket.get(receiver, 0) + n


@dataclass(frozen=True, slots=True)
class Retry:
    key: str
    attempts: int
    next_attempt_s: float
    error: str


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ is ~3x slower
class QueuedAlert:
    alert_json: bytes
    source: SourceRef
    # The decoded alert when this process decoded it (None after a restart: decoded again
    # from the bytes). In memory only; the bytes are what is journaled and dead-lettered.
    decoded: AlertRaised | None = field(default=None, compare=False, repr=False)

    def parsed(self) -> AlertRaised:
        return self.decoded or AlertRaised.model_validate_json(self.alert_json)


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ is ~3x slower
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
    return "\x1f".join([labels.get(name, "") for name in rule.equal])


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """Every (label, value) of the selector is among the labels (a set test, in C)."""
    return selector.items() <= labels.items()


def _source_doc(source: SourceRef) -> list[Any]:
    key = None if source.key is None else source.key.decode("latin-1")
    return [source.topic, source.partition, source.offset, key]


def _source_from(doc: list[Any]) -> SourceRef:
    topic, partition, offset, key = doc
    return SourceRef(
        topic, int(partition), int(offset), None if key is None else key.encode("latin-1")
    )


# --- in-memory state ------------------------------------------------------------------------


@dataclass(slots=True)
class _Pending:
    """An alert waiting in its group."""

    alert: QueuedAlert
    enqueued_at: float
    targets: tuple[tuple[int, str], ...]  # the inhibit rules' (rule, equal key) it is a target of


@dataclass(slots=True)
class _Group:
    labels: dict[str, str]
    wait_s: float
    interval_s: float
    due_at: float | None = None  # None while nothing waits
    last_flushed_at: float | None = None
    alerts: dict[str, _Pending] = field(default_factory=dict)  # by alert id, arrival order


@dataclass(slots=True)
class _Queue:
    """One receiver's groups and notifications."""

    groups: dict[str, _Group] = field(default_factory=dict)
    group_due: list[tuple[float, str]] = field(default_factory=list)  # heap; stale entries skipped
    notes: dict[str, Notification] = field(default_factory=dict)  # by key, creation order
    next_at: dict[str, float] = field(default_factory=dict)  # key → next attempt
    ready: list[tuple[float, int, str]] = field(default_factory=list)  # heap of (next_at, seq, key)
    claimed: set[str] = field(default_factory=set)  # handed out, outcome not yet recorded
    seen: dict[str, float] = field(default_factory=dict)  # alert id → dedup until

    def pending_alerts(self) -> int:
        return sum(len(g.alerts) for g in self.groups.values())


class Outbox:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._next_path = Path(f"{path}.new")
        self._queues: dict[str, _Queue] = {}
        self._inhibitions: dict[tuple[int, str], float] = {}  # → until
        self._silences: dict[str, tuple[bytes, float]] = {}  # id → (document, ends_at)
        self._seq = itertools.count()
        self._lock = threading.Lock()  # the descriptors, between the loop and the sync thread
        self._retired_fd: int | None = None  # the journal before a compaction, until synced
        self._dir_synced = False
        legacy = path.with_name(LEGACY_NAME)
        if legacy.exists() and not path.exists() and not self._next_path.exists():
            self._import_legacy(legacy)
        self._size = self._recover()
        self._snapshot_size = self._size
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    # --- the journal ----------------------------------------------------------------------

    def _append(self, lines: list[bytes]) -> None:
        """One write() for an operation's lines (looped: a short write continues)."""
        data = b"".join(lines)
        try:
            _write_all(self._fd, data)
        except OSError as exc:
            raise OutboxError(f"cannot append to {self.path}: {exc}") from exc
        self._size += len(data)

    def _recover(self) -> int:
        """Rebuild the state from the journal (a finished compaction's file first)."""
        if self._next_path.exists():
            if _complete_snapshot(self._next_path):
                self._next_path.replace(self.path)
                _fsync_dir(self.path.parent)
            else:
                log.warning("%s: an unfinished compaction, ignored", self._next_path)
                self._next_path.unlink()
        if not self.path.exists():
            return 0
        data = self.path.read_bytes()
        good = 0
        for number, end in enumerate(_line_ends(data), start=1):
            line = data[good:end]
            try:
                op = orjson.loads(line)
                self._apply(op)
            except (orjson.JSONDecodeError, ValueError, TypeError, KeyError, IndexError) as exc:
                if good + len(line) < len(data):
                    log.warning(
                        "%s:%d: unreadable (%s); the rest is dropped", self.path, number, exc
                    )
                break
            good += len(line)
        if good < len(data):
            log.warning(
                "%s: %d bytes after the last whole line cut off (a write torn by a crash)",
                self.path,
                len(data) - good,
            )
            os.truncate(self.path, good)
        return good

    def _import_legacy(self, legacy: Path) -> None:
        """The SQLite outbox of an earlier version, written as this journal's first snapshot
        (durable before the database is set aside as `<name>.imported`)."""
        ops = snapshot_lines(legacy, version=JOURNAL_VERSION)
        fd = os.open(self._next_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_all(fd, b"".join(_line(op) for op in ops))
            os.fsync(fd)
        finally:
            os.close(fd)
        self._next_path.replace(self.path)
        for suffix in ("", "-wal", "-shm"):
            old = Path(f"{legacy}{suffix}")
            if old.exists():
                old.replace(Path(f"{old}.imported"))
        _fsync_dir(self.path.parent)
        counts = {kind: sum(op[0] == kind for op in ops) for kind in ("N", "A", "s")}
        log.info(
            "imported %s: %d notifications, %d waiting alerts, %d silences (now %s.imported)",
            legacy,
            counts["N"],
            counts["A"],
            counts["s"],
            legacy,
        )

    def _apply(self, op: list[Any]) -> None:
        kind = op[0]
        if kind == "q":
            self._apply_queue(op)
        elif kind == "f":
            self._apply_flush(op[1], now_s=op[2])
        elif kind == "d":
            self._apply_delivered(op[1], op[2])
        elif kind == "r":
            self._apply_retries(op[1], [Retry(*r) for r in op[2]])
        elif kind == "i":
            self._apply_inhibit(op[1], op[2], op[3])
        elif kind == "s":
            self._silences[op[1]] = (op[2].encode(), op[3])
        elif kind == "G":
            _, receiver, group_key, labels, wait_s, interval_s, due_at, flushed_at = op
            group = _Group(labels, wait_s, interval_s, due_at, flushed_at)
            queue = self._queue_of(receiver)
            queue.groups[group_key] = group
            if due_at is not None:
                heapq.heappush(queue.group_due, (due_at, group_key))
        elif kind == "A":
            _, receiver, group_key, alert_id, alert, source, at, targets = op
            self._add_pending(
                receiver,
                group_key,
                alert_id,
                QueuedAlert(alert.encode(), _source_from(source)),
                at,
                tuple((int(r), k) for r, k in targets),
            )
        elif kind == "N":
            _, receiver, key, group_key, labels, alerts, first_at, attempts, next_at, error = op
            alerts_ = tuple(QueuedAlert(a.encode(), _source_from(s)) for a, s in alerts)
            self._add_note(
                Notification(key, receiver, group_key, labels, alerts_, first_at, attempts, error),
                next_at=next_at,
            )
        elif kind == "Z":
            self._queue_of(op[1]).seen.update(op[2])
        elif kind not in ("V", "E"):
            raise ValueError(f"unknown operation {kind!r}")

    def close(self) -> None:
        self.sync()
        with contextlib.suppress(OSError):
            os.close(self._fd)

    def sync(self) -> None:
        """Make every change written so far survive a power loss: fsync the journal (and its
        directory entry once); after a compaction, also put the new journal in the old one's
        place. Runs on the sync thread."""
        with self._lock:
            fd, retired = self._fd, self._retired_fd
        os.fsync(fd)
        if retired is not None:
            # The snapshot and everything since are durable in `.new`: it becomes the journal.
            self._next_path.replace(self.path)
            _fsync_dir(self.path.parent)
            with self._lock:
                self._retired_fd = None
            os.close(retired)
        elif not self._dir_synced:
            _fsync_dir(self.path.parent)
            self._dir_synced = True

    def compact_if_due(self, *, now_s: float) -> bool:
        """Start a new journal with a snapshot of the live state once the journal has grown
        well past its last snapshot; `sync` finishes the switch. On the event loop."""
        if self._size < max(COMPACT_MIN_BYTES, COMPACT_RATIO * self._snapshot_size):
            return False
        if self._retired_fd is not None:
            return False  # the last switch awaits its sync
        lines = self._snapshot(now_s)
        data = b"".join(lines)
        fd = os.open(self._next_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        try:
            _write_all(fd, data)
        except OSError as exc:
            os.close(fd)
            log.warning("compaction of %s failed (%s); the journal goes on", self.path, exc)
            return False
        with self._lock:
            self._retired_fd, self._fd = self._fd, fd
        log.info("outbox journal compacted: %d bytes → %d", self._size, len(data))
        self._size = self._snapshot_size = len(data)
        return True

    def _snapshot(self, now_s: float) -> list[bytes]:
        lines = [_line(["V", JOURNAL_VERSION])]
        for sid, (doc, ends_at) in self._silences.items():
            lines.append(_line(["s", sid, doc.decode(), ends_at]))
        for (rule, key), until in self._inhibitions.items():
            if until > now_s:
                lines.append(_line(["i", rule, key, until]))
        for receiver, queue in self._queues.items():
            for group_key, g in queue.groups.items():
                lines.append(
                    _line(
                        [
                            "G",
                            receiver,
                            group_key,
                            g.labels,
                            g.wait_s,
                            g.interval_s,
                            g.due_at,
                            g.last_flushed_at,
                        ]
                    )
                )
                for alert_id, p in g.alerts.items():
                    lines.append(
                        _line(
                            [
                                "A",
                                receiver,
                                group_key,
                                alert_id,
                                p.alert.alert_json.decode(),
                                _source_doc(p.alert.source),
                                p.enqueued_at,
                                p.targets,
                            ]
                        )
                    )
            for key, n in queue.notes.items():
                alerts = [[a.alert_json.decode(), _source_doc(a.source)] for a in n.alerts]
                lines.append(
                    _line(
                        [
                            "N",
                            receiver,
                            key,
                            n.group_key,
                            n.group_labels,
                            alerts,
                            n.first_enqueued_at,
                            n.attempts,
                            queue.next_at[key],
                            n.last_error,
                        ]
                    )
                )
            seen = [[a, until] for a, until in queue.seen.items() if until > now_s]
            for start in range(0, len(seen), 10_000):
                lines.append(_line(["Z", receiver, seen[start : start + 10_000]]))
        lines.append(_line(["E"]))
        return lines

    def waiting(self) -> int:
        """Notifications not yet delivered (at start-up: those a crash left behind)."""
        return sum(len(q.notes) for q in self._queues.values())

    def _queue_of(self, receiver: str) -> _Queue:
        queue = self._queues.get(receiver)
        if queue is None:
            queue = self._queues[receiver] = _Queue()
        return queue

    # --- consumer side --------------------------------------------------------------------

    def enqueue(
        self, batch: Sequence[Incoming], *, rules: Sequence[InhibitRule], now_s: float
    ) -> EnqueueResult:
        """Queue a batch's destinations: one journal write for the batch, durable across a
        power loss once `sync` has returned (see the module docstring).

        The hot path of the consume loop (every alert, every receiver): locals over
        attributes and helper calls, on purpose."""
        result = EnqueueResult()
        queued_n, duplicate_n, inhibited_n = result.queued, result.duplicate, result.inhibited
        lines: list[bytes] = []
        inhibitions = self._inhibitions
        compiled = [
            (index, rule.source.items(), rule.target.items(), rule)
            for index, rule in enumerate(rules)
        ]
        for item in batch:
            labels = item.labels.items()
            targets: list[tuple[int, str]] = []
            for index, source, target, rule in compiled:
                if source <= labels:
                    key, until = _equal_key(rule, item.labels), now_s + rule.duration_s
                    lines.append(_line(["i", index, key, until]))
                    for receiver in self._apply_inhibit(index, key, until):
                        result.count(inhibited_n, receiver)
                        result.count(queued_n, receiver, -1)
                        result.receivers.add(receiver)
                if target <= labels:
                    targets.append((index, _equal_key(rule, item.labels)))
            if targets and any(inhibitions.get(t, 0.0) > now_s for t in targets):
                for dest in item.destinations:
                    inhibited_n[dest.receiver] = inhibited_n.get(dest.receiver, 0) + 1
                continue
            queued: list[list[Any]] = []
            alert_id = item.alert_id
            for dest in item.destinations:
                receiver = dest.receiver
                queue = self._queues.get(receiver) or self._queue_of(receiver)
                if queue.seen.get(alert_id, 0.0) > now_s or any(q[0] == receiver for q in queued):
                    duplicate_n[receiver] = duplicate_n.get(receiver, 0) + 1  # a replay, a repeat
                    continue
                grouping = dest.grouping
                queued.append(
                    [
                        receiver,
                        dest.group_key,
                        dest.group_labels,
                        grouping.group_wait_s,
                        grouping.group_interval_s,
                        now_s + grouping.repeat_interval_s,
                    ]
                )
                queued_n[receiver] = queued_n.get(receiver, 0) + 1
            if queued:
                op = [
                    "q",
                    now_s,
                    alert_id,
                    item.alert_json.decode(),
                    _source_doc(item.source),
                    queued,
                    targets,
                ]
                lines.append(_line(op))
                queued_alert = QueuedAlert(item.alert_json, item.source, item.alert)
                self._apply_queue(op, alert=queued_alert)
        if lines:
            self._append(lines)
        result.receivers.update(queued_n)
        return result

    def _apply_queue(self, op: list[Any], *, alert: QueuedAlert | None = None) -> None:
        _, now_s, alert_id, alert_text, source, queued, targets = op
        if alert is None:
            alert = QueuedAlert(alert_text.encode(), _source_from(source))
        pending = _Pending(alert, now_s, tuple([(int(r), k) for r, k in targets]))
        for receiver, group_key, labels, wait_s, interval_s, seen_until in queued:
            queue = self._queues.get(receiver) or self._queue_of(receiver)
            queue.seen[alert_id] = seen_until
            group = queue.groups.get(group_key)
            if group is None:
                group = queue.groups[group_key] = _Group(labels, wait_s, interval_s)
            else:
                group.wait_s, group.interval_s = wait_s, interval_s
            if group.due_at is None:
                # group_wait from now, but not before group_interval after the last flush
                due = now_s + wait_s
                if group.last_flushed_at is not None:
                    due = max(due, group.last_flushed_at + interval_s)
                group.due_at = due
                heapq.heappush(queue.group_due, (due, group_key))
            group.alerts.setdefault(alert_id, pending)  # shared: never changed once made

    def _add_pending(
        self,
        receiver: str,
        group_key: str,
        alert_id: str,
        alert: QueuedAlert,
        at: float,
        targets: tuple[tuple[int, str], ...],
    ) -> None:
        group = self._queues[receiver].groups[group_key]
        if alert_id in group.alerts:
            return
        group.alerts[alert_id] = _Pending(alert, at, targets)

    def _apply_inhibit(self, rule: int, key: str, until: float) -> list[str]:
        """An inhibition source: hold back its targets until `until`, drop the pending ones;
        returns the receivers of the dropped alerts (one entry per alert)."""
        target = (rule, key)
        self._inhibitions[target] = max(self._inhibitions.get(target, 0.0), until)
        # A scan, not an index: sources are rare, and only alerts still waiting in their groups
        # (group_wait, group_interval: seconds) are pending; an index cost every alert a set
        # insert and a removal (bench/notifier/own_cpu.py: ~9% of the notifier's own work).
        dropped: list[str] = []
        for receiver, queue in self._queues.items():
            for group in queue.groups.values():
                held = [a for a, p in group.alerts.items() if target in p.targets]
                for alert_id in held:
                    del group.alerts[alert_id]
                    dropped.append(receiver)
        return dropped

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
        notifications, 3. hand out up to `limit` due notifications not in `exclude` (nor
        handed out before), 4. say when the next one is due."""
        lines: list[bytes] = []
        if delivered:
            lines.append(_line(["d", receiver, list(delivered)]))
            self._apply_delivered(receiver, delivered)
        if retries:
            lines.append(_line(["r", receiver, [dataclasses.astuple(r) for r in retries]]))
            self._apply_retries(receiver, retries)
        if self._group_due(receiver, now_s):
            lines.append(_line(["f", receiver, now_s]))
            self._apply_flush(receiver, now_s=now_s)
        if lines:
            self._append(lines)
        claimed = self._claim(receiver, now_s=now_s, exclude=exclude, limit=limit)
        return claimed, self.next_due_s(receiver, exclude=exclude)

    def _apply_delivered(self, receiver: str, keys: Sequence[str]) -> None:
        queue = self._queue_of(receiver)
        for key in keys:
            queue.notes.pop(key, None)
            queue.next_at.pop(key, None)
            queue.claimed.discard(key)

    def _apply_retries(self, receiver: str, retries: Sequence[Retry]) -> None:
        queue = self._queue_of(receiver)
        for r in retries:
            note = queue.notes.get(r.key)
            if note is None:
                continue
            queue.notes[r.key] = dataclasses.replace(
                note, attempts=r.attempts, last_error=r.error[:2000]
            )
            queue.next_at[r.key] = r.next_attempt_s
            queue.claimed.discard(r.key)
            heapq.heappush(queue.ready, (r.next_attempt_s, next(self._seq), r.key))

    def _group_due(self, receiver: str, now_s: float) -> bool:
        queue = self._queues.get(receiver)
        due = None if queue is None else _next_group_due(queue)
        return due is not None and due <= now_s

    def flush_due_groups(self, receiver: str, *, now_s: float) -> int:
        """Turn every group whose wait is over into notifications; returns how many."""
        if not self._group_due(receiver, now_s):
            return 0
        self._append([_line(["f", receiver, now_s])])
        return self._apply_flush(receiver, now_s=now_s)

    def _apply_flush(self, receiver: str, *, now_s: float) -> int:
        queue = self._queue_of(receiver)
        heap = queue.group_due
        made = 0
        while heap and heap[0][0] <= now_s:
            due_at, group_key = heapq.heappop(heap)
            group = queue.groups.get(group_key)
            if group is None or group.due_at != due_at:
                continue  # stale
            members = list(group.alerts.items())
            group.alerts = {}
            group.due_at = None
            if not members:
                continue  # every alert of it was inhibited: nothing was sent
            group.last_flushed_at = now_s
            if len(members) == 1:  # the common case: no chunking, no min
                ((alert_id, pending),) = members
                key = notification_key(receiver, group_key, (alert_id,))
                if key not in queue.notes:
                    self._add_note(
                        Notification(
                            key,
                            receiver,
                            group_key,
                            group.labels,
                            (pending.alert,),
                            pending.enqueued_at,
                            0,
                            "",
                        ),
                        next_at=now_s,
                    )
                    made += 1
                continue
            for start in range(0, len(members), MAX_ALERTS_PER_NOTIFICATION):
                chunk = members[start : start + MAX_ALERTS_PER_NOTIFICATION]
                ids, pendings = zip(*chunk, strict=True)
                key = notification_key(receiver, group_key, ids)
                if key in queue.notes:
                    continue
                note = Notification(
                    key,
                    receiver,
                    group_key,
                    group.labels,
                    tuple([p.alert for p in pendings]),
                    min([p.enqueued_at for p in pendings]),
                    0,
                    "",
                )
                self._add_note(note, next_at=now_s)
                made += 1
        return made

    def _add_note(self, note: Notification, *, next_at: float) -> None:
        queue = self._queue_of(note.receiver)
        queue.notes[note.key] = note
        queue.next_at[note.key] = next_at
        heapq.heappush(queue.ready, (next_at, next(self._seq), note.key))

    def next_due_s(self, receiver: str, *, exclude: Collection[str] = ()) -> float | None:
        """When this receiver next has work: a group to flush or a notification to (re)send."""
        queue = self._queues.get(receiver)
        if queue is None:
            return None
        times = []
        if (group_due := _next_group_due(queue)) is not None:
            times.append(group_due)
        ready = queue.ready
        while ready and not self._sendable(queue, ready[0]):
            heapq.heappop(ready)
        if ready:
            if ready[0][2] not in exclude:
                times.append(ready[0][0])
            else:  # rare: a key in `exclude` the outbox has not handed out
                later = [e for e in heapq.nsmallest(len(exclude) + 1, ready) if e[2] not in exclude]
                times.extend(e[0] for e in later[:1])
        return min(times) if times else None

    @staticmethod
    def _sendable(queue: _Queue, entry: tuple[float, int, str]) -> bool:
        at, _, key = entry
        return queue.next_at.get(key) == at and key not in queue.claimed

    def older_than(
        self, receiver: str, *, before_s: float, exclude: Collection[str], limit: int
    ) -> list[Notification]:
        """Notifications first queued before `before_s` (past their max age), not handed out."""
        queue = self._queues.get(receiver)
        if queue is None:
            return []
        old = [
            n
            for n in queue.notes.values()
            if n.first_enqueued_at < before_s
            and n.key not in queue.claimed
            and n.key not in exclude
        ]
        return old[:limit]

    def claim(self, receiver: str, *, now_s: float, limit: int) -> list[Notification]:
        """Due notifications of one receiver (tests; the dispatcher uses `step`)."""
        return self._claim(receiver, now_s=now_s, exclude=(), limit=limit)

    def _claim(
        self, receiver: str, *, now_s: float, exclude: Collection[str], limit: int
    ) -> list[Notification]:
        """Hand out up to `limit` due notifications; each stays handed out (not handed out
        again) until its outcome is recorded by `step`."""
        queue = self._queues.get(receiver)
        if queue is None or limit <= 0:
            return []
        ready = queue.ready
        out: list[Notification] = []
        skipped: list[tuple[float, int, str]] = []
        while ready and len(out) < limit and ready[0][0] <= now_s:
            entry = heapq.heappop(ready)
            if not self._sendable(queue, entry):
                continue
            if entry[2] in exclude:
                skipped.append(entry)
                continue
            queue.claimed.add(entry[2])
            out.append(queue.notes[entry[2]])
        for entry in skipped:
            heapq.heappush(ready, entry)
        return out

    def delivered(self, key: str) -> None:
        receiver = self._receiver_of(key)
        self.step(receiver, now_s=float("-inf"), delivered=[key], limit=0)

    def retry_later(self, key: str, *, attempts: int, next_attempt_s: float, error: str) -> None:
        receiver = self._receiver_of(key)
        retry = Retry(key, attempts, next_attempt_s, error)
        self.step(receiver, now_s=float("-inf"), retries=[retry], limit=0)

    def _receiver_of(self, key: str) -> str:
        return next(r for r, q in self._queues.items() if key in q.notes)

    def pending_count(self, receiver: str) -> int:
        queue = self._queues.get(receiver)
        return 0 if queue is None else queue.pending_alerts() + len(queue.notes)

    def prune(self, *, now_s: float) -> None:
        """Forget expired dedup entries, idle groups, inhibitions and silences (memory only:
        each is checked for expiry where it is read, so a replay restoring them is harmless)."""
        for queue in self._queues.values():
            for alert_id in [a for a, until in queue.seen.items() if until <= now_s]:
                del queue.seen[alert_id]
            # An idle group past its interval behaves exactly like a new one: drop it.
            idle = [
                k
                for k, g in queue.groups.items()
                if g.due_at is None
                and (g.last_flushed_at is None or g.last_flushed_at + g.interval_s < now_s)
            ]
            for group_key in idle:
                del queue.groups[group_key]
        for target in [t for t, until in self._inhibitions.items() if until <= now_s]:
            del self._inhibitions[target]
        for sid in [
            s for s, (_, ends) in self._silences.items() if ends <= now_s - _SILENCE_KEPT_S
        ]:
            del self._silences[sid]

    # --- silences -------------------------------------------------------------------------

    def save_silence(self, silence: Silence) -> None:
        doc = silence.model_dump_json()
        ends_at = silence.ends_at.timestamp()
        self._append([_line(["s", silence.id, doc, ends_at])])
        self._silences[silence.id] = (doc.encode(), ends_at)

    def silences(self) -> list[Silence]:
        ordered = sorted(self._silences.values(), key=lambda s: s[1])
        return [Silence.model_validate_json(doc) for doc, _ in ordered]


def _next_group_due(queue: _Queue) -> float | None:
    """The earliest due time of a receiver's waiting groups (stale heap entries dropped)."""
    heap = queue.group_due
    while heap:
        due_at, group_key = heap[0]
        group = queue.groups.get(group_key)
        if group is not None and group.due_at == due_at:
            return due_at
        heapq.heappop(heap)  # stale: flushed or pruned since
    return None


def _line(op: list[Any]) -> bytes:
    return orjson.dumps(op) + b"\n"


def _write_all(fd: int, data: bytes) -> None:
    """write() until every byte is written (a short write continues)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _line_ends(data: bytes) -> Iterable[int]:
    """The offset after each whole line's newline (a torn last line has none)."""
    start = 0
    while (at := data.find(b"\n", start)) >= 0:
        start = at + 1
        yield start


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _complete_snapshot(path: Path) -> bool:
    """Whether a compaction's file holds its whole snapshot (its end line was written)."""
    with path.open("rb") as f:
        for line in f:
            if line == b'["E"]\n':
                return True
    return False
