"""Per-(topic, partition, event-time hour) buffers, their seal rules and the offsets safe to commit.

Pure: no I/O, time comes from an injected clock. The rules that close ("seal") a buffer are
chosen so that an object's rows are a function of its start offset and the Kafka log alone:

- count: the buffer holds `max_records` records;
- size: the buffer holds `max_bytes` bytes;
- stream-time age: a record of the same Kafka partition arrives whose Kafka timestamp is at
  least `window` after the buffer's first record's timestamp (that record is not included).

Those three read only the records, so after a crash the consumer, resuming at the committed
offset, rebuilds buffers that start at the same offsets and seal at the same records: a
rewrite lands on the same object name with the same rows. The fourth rule reads the wall
clock, because a quiet partition has no next record to decide for it:

- idle: the partition has received nothing for `idle_grace` and its oldest open buffer is at
  least `window` old. All of that partition's open buffers seal together, so its commit can
  then move to its position. A quiet partition is written within `window + idle_grace`.

The offset to commit for a Kafka partition is the smallest start offset of any buffer not yet
written (open or sealed), or the partition's position when none is: committing past a record
still buffered for another hour of the same partition would lose it in a crash.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Generic, TypeVar

from servicekit.clock import Clock

from s3_archiver.object_keys import PartitionPath

T = TypeVar("T")

TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class BufferPolicy:
    """When buffers seal. Defaults favour Athena: the largest files the memory bound allows."""

    max_records: int = 1_000_000
    max_bytes: int = 64 * 1024 * 1024
    window: timedelta = timedelta(minutes=10)
    idle_grace: timedelta = timedelta(seconds=60)

    def __post_init__(self) -> None:
        if self.max_records < 1 or self.max_bytes < 1:
            raise ValueError("max_records and max_bytes must be positive")
        if self.window <= timedelta(0) or self.idle_grace < timedelta(0):
            raise ValueError("window must be positive and idle_grace non-negative")


@dataclass(slots=True)
class Buffer(Generic[T]):
    """Records of one Kafka partition for one event-time hour, in offset order."""

    topic: str
    partition: int
    path: PartitionPath
    start_offset: int
    first_timestamp_ms: int
    opened_mono: float
    rows: list[T] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    timestamps_ms: list[int] = field(default_factory=list)
    size_bytes: int = 0
    seal_reason: str | None = None

    @property
    def sealed(self) -> bool:
        return self.seal_reason is not None

    @property
    def end_offset(self) -> int:
        """The last offset this buffer holds (inclusive)."""
        return self.offsets[-1]

    @property
    def last_timestamp_ms(self) -> int:
        return max(self.timestamps_ms)


@dataclass(slots=True)
class _PartitionState(Generic[T]):
    open: dict[PartitionPath, Buffer[T]] = field(default_factory=dict)
    sealed: list[Buffer[T]] = field(default_factory=list)
    position: int | None = None  # next offset after the last record seen
    committed: int | None = None
    first_offset: int | None = None  # first record seen since assignment
    last_record_mono: float = 0.0


class WindowBuffers(Generic[T]):
    """All buffers of one consumer; see the module docstring for the rules."""

    def __init__(self, policy: BufferPolicy, clock: Clock) -> None:
        self.policy = policy
        self.clock = clock
        self._parts: dict[TopicPartition, _PartitionState[T]] = {}
        self._buffered_bytes = 0

    # --- input -------------------------------------------------------------------------

    def add(
        self,
        *,
        topic: str,
        partition: int,
        offset: int,
        timestamp_ms: int,
        path: PartitionPath,
        row: T,
        size_bytes: int,
    ) -> None:
        """Buffer one record. Records of a partition must come in offset order."""
        state = self._state(topic, partition, offset)
        self._seal_by_stream_time(state, timestamp_ms)
        buffer = state.open.get(path)
        if buffer is None:
            buffer = Buffer(
                topic=topic,
                partition=partition,
                path=path,
                start_offset=offset,
                first_timestamp_ms=timestamp_ms,
                opened_mono=self.clock.monotonic(),
            )
            state.open[path] = buffer
        buffer.rows.append(row)
        buffer.offsets.append(offset)
        buffer.timestamps_ms.append(timestamp_ms)
        buffer.size_bytes += size_bytes
        self._buffered_bytes += size_bytes
        if len(buffer.rows) >= self.policy.max_records:
            self._seal(state, buffer, "records")
        elif buffer.size_bytes >= self.policy.max_bytes:
            self._seal(state, buffer, "bytes")
        state.position = offset + 1
        state.last_record_mono = self.clock.monotonic()

    def add_batch(
        self,
        *,
        topic: str,
        partition: int,
        offsets: Sequence[int],
        timestamps_ms: Sequence[int],
        paths: Sequence[PartitionPath],
        rows: Sequence[T],
        sizes: Sequence[int],
    ) -> None:
        """`add` for each record of one partition in turn (same buffers, same seals), with
        the per-record work kept to appends: the archiver's hot path."""
        if not offsets:
            return
        state = self._state(topic, partition, offsets[0])
        open_ = state.open
        window_ms = int(self.policy.window.total_seconds() * 1000)
        max_records, max_bytes = self.policy.max_records, self.policy.max_bytes
        now = self.clock.monotonic()
        oldest = min((b.first_timestamp_ms for b in open_.values()), default=None)
        added = 0
        for offset, ts, path, row, size in zip(
            offsets, timestamps_ms, paths, rows, sizes, strict=True
        ):
            if oldest is not None and ts - oldest >= window_ms:
                self._seal_by_stream_time(state, ts)
                oldest = min((b.first_timestamp_ms for b in open_.values()), default=None)
            buffer = open_.get(path)
            if buffer is None:
                buffer = open_[path] = Buffer(
                    topic=topic,
                    partition=partition,
                    path=path,
                    start_offset=offset,
                    first_timestamp_ms=ts,
                    opened_mono=now,
                )
                oldest = ts if oldest is None else min(oldest, ts)
            buffer.rows.append(row)
            buffer.offsets.append(offset)
            buffer.timestamps_ms.append(ts)
            buffer.size_bytes += size
            added += size
            if len(buffer.rows) >= max_records or buffer.size_bytes >= max_bytes:
                reason = "records" if len(buffer.rows) >= max_records else "bytes"
                self._seal(state, buffer, reason)
                oldest = min((b.first_timestamp_ms for b in open_.values()), default=None)
        self._buffered_bytes += added
        state.position = offsets[-1] + 1
        state.last_record_mono = now

    def skip(self, *, topic: str, partition: int, offset: int) -> None:
        """A record consumed but not buffered (dead-lettered): only the position moves."""
        state = self._state(topic, partition, offset)
        state.position = offset + 1
        state.last_record_mono = self.clock.monotonic()

    # --- sealing -----------------------------------------------------------------------

    def seal_idle(self) -> int:
        """Seal every open buffer of each quiet partition (wall clock); returns how many."""
        now = self.clock.monotonic()
        window = self.policy.window.total_seconds()
        grace = self.policy.idle_grace.total_seconds()
        sealed = 0
        for state in self._parts.values():
            if not state.open or now - state.last_record_mono < grace:
                continue
            if now - min(b.opened_mono for b in state.open.values()) < window:
                continue
            for buffer in list(state.open.values()):
                self._seal(state, buffer, "idle")
                sealed += 1
        return sealed

    def seal_all(self) -> int:
        """Seal every open buffer (shutdown); returns how many."""
        sealed = 0
        for state in self._parts.values():
            for buffer in list(state.open.values()):
                self._seal(state, buffer, "shutdown")
                sealed += 1
        return sealed

    def seal_largest(self) -> Buffer[T] | None:
        """Seal the largest open buffer (memory pressure); returns it, or None if none is open.

        Unlike the other rules this depends on every partition's buffers at once, so it is
        not replayed identically: it only fires when `max_buffered_bytes` is too small for
        the assigned partitions' buffers (see the README for the sizing rule).
        """
        candidates = [(b.size_bytes, s, b) for s in self._parts.values() for b in s.open.values()]
        if not candidates:
            return None
        _, state, buffer = max(candidates, key=lambda c: c[0])
        self._seal(state, buffer, "pressure")
        return buffer

    def ready(self) -> list[Buffer[T]]:
        """Sealed buffers waiting to be written, oldest start offset first per partition."""
        out: list[Buffer[T]] = []
        for state in self._parts.values():
            out.extend(state.sealed)
        return out

    def mark_written(self, buffer: Buffer[T]) -> None:
        """The object holding `buffer` is in the store: forget its rows."""
        state = self._parts.get((buffer.topic, buffer.partition))
        if state is None or buffer not in state.sealed:
            return  # the partition was revoked meanwhile
        state.sealed.remove(buffer)
        self._buffered_bytes -= buffer.size_bytes

    # --- commits -----------------------------------------------------------------------

    def committable(self) -> dict[TopicPartition, int]:
        """Offsets that may be committed now and move a partition's commit forward."""
        out: dict[TopicPartition, int] = {}
        for tp, state in self._parts.items():
            offset = self._safe_offset(state)
            if offset is not None and (state.committed is None or offset > state.committed):
                out[tp] = offset
        return out

    def mark_committed(self, offsets: dict[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            state = self._parts.get(tp)
            if state is not None:
                state.committed = offset

    def commit_lag(self) -> dict[TopicPartition, int]:
        """Records consumed but not committed, per partition."""
        out: dict[TopicPartition, int] = {}
        for tp, state in self._parts.items():
            if state.position is not None:
                base = state.committed if state.committed is not None else state.first_offset
                base = state.position if base is None else base
                out[tp] = max(0, state.position - base)
        return out

    def drop_partition(self, topic: str, partition: int) -> None:
        """The partition was revoked: its new owner replays from the committed offset."""
        state = self._parts.pop((topic, partition), None)
        if state is not None:
            for buffer in self._unwritten(state):
                self._buffered_bytes -= buffer.size_bytes

    # --- observation -------------------------------------------------------------------

    @property
    def buffered_bytes(self) -> int:
        return self._buffered_bytes

    @property
    def open_buffers(self) -> int:
        return sum(len(s.open) + len(s.sealed) for s in self._parts.values())

    def oldest_unwritten_age_s(self) -> float:
        opened = [b.opened_mono for s in self._parts.values() for b in self._unwritten(s)]
        return 0.0 if not opened else max(0.0, self.clock.monotonic() - min(opened))

    # --- internals ---------------------------------------------------------------------

    def _state(self, topic: str, partition: int, offset: int) -> _PartitionState[T]:
        state = self._parts.get((topic, partition))
        if state is None:
            state = self._parts[(topic, partition)] = _PartitionState(first_offset=offset)
        elif state.position is not None and offset < state.position:
            raise ValueError(
                f"{topic}[{partition}] went back from {state.position} to {offset}: "
                "drop the partition before seeking"
            )
        return state

    def _seal_by_stream_time(self, state: _PartitionState[T], timestamp_ms: int) -> None:
        window_ms = int(self.policy.window.total_seconds() * 1000)
        for buffer in list(state.open.values()):
            if timestamp_ms - buffer.first_timestamp_ms >= window_ms:
                self._seal(state, buffer, "window")

    def _seal(self, state: _PartitionState[T], buffer: Buffer[T], reason: str) -> None:
        buffer.seal_reason = reason
        del state.open[buffer.path]
        state.sealed.append(buffer)

    @staticmethod
    def _unwritten(state: _PartitionState[T]) -> Iterator[Buffer[T]]:
        yield from state.open.values()
        yield from state.sealed

    @staticmethod
    def _safe_offset(state: _PartitionState[T]) -> int | None:
        starts = [b.start_offset for b in WindowBuffers._unwritten(state)]
        return min(starts) if starts else state.position
