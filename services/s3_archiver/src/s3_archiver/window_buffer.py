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
from itertools import accumulate
from typing import Generic, Protocol, TypeVar

from servicekit.clock import Clock

from s3_archiver.object_keys import PartitionPath

TopicPartition = tuple[str, int]


class Rows(Protocol):
    """The contents of a batch of records, in offset order: a `pyarrow.Table` in the
    archiver (one row per record), a small list type in tests."""

    def __len__(self) -> int: ...

    def slice(self, offset: int, length: int) -> Rows: ...

    def take(self, indices: Sequence[int]) -> Rows: ...


R = TypeVar("R", bound=Rows)


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
class Buffer(Generic[R]):
    """Records of one Kafka partition for one event-time hour, in offset order, held as
    chunks (one per batch that fed it)."""

    topic: str
    partition: int
    path: PartitionPath
    start_offset: int
    first_timestamp_ms: int
    opened_mono: float
    chunks: list[R] = field(default_factory=list)
    count: int = 0
    end_offset: int = -1  # the last offset this buffer holds (inclusive)
    last_timestamp_ms: int = 0  # the newest Kafka timestamp among its records
    size_bytes: int = 0
    seal_reason: str | None = None

    @property
    def sealed(self) -> bool:
        return self.seal_reason is not None

    def _append(self, chunk: R, *, count: int, end_offset: int, newest_ms: int, size: int) -> None:
        self.chunks.append(chunk)
        self.count += count
        self.end_offset = end_offset
        self.last_timestamp_ms = max(self.last_timestamp_ms, newest_ms)
        self.size_bytes += size


@dataclass(slots=True)
class _PartitionState(Generic[R]):
    topic: str
    partition: int
    open: dict[PartitionPath, Buffer[R]] = field(default_factory=dict)
    sealed: list[Buffer[R]] = field(default_factory=list)
    position: int | None = None  # next offset after the last record seen
    committed: int | None = None
    first_offset: int | None = None  # first record seen since assignment
    last_record_mono: float = 0.0

    def new_buffer(self, path: PartitionPath, offset: int, ts: int, now: float) -> Buffer[R]:
        return Buffer(
            topic=self.topic,
            partition=self.partition,
            path=path,
            start_offset=offset,
            first_timestamp_ms=ts,
            opened_mono=now,
            end_offset=offset,
            last_timestamp_ms=ts,
        )


class WindowBuffers(Generic[R]):
    """All buffers of one consumer; see the module docstring for the rules."""

    def __init__(self, policy: BufferPolicy, clock: Clock) -> None:
        self.policy = policy
        self.clock = clock
        self._parts: dict[TopicPartition, _PartitionState[R]] = {}
        self._buffered_bytes = 0
        self._window_ms = int(policy.window.total_seconds() * 1000)

    # --- input -------------------------------------------------------------------------

    def add(
        self,
        *,
        topic: str,
        partition: int,
        offset: int,
        timestamp_ms: int,
        path: PartitionPath,
        row: R,
        size_bytes: int,
    ) -> None:
        """Buffer one record (`row` holds just it). Records of a partition come in offset order."""
        self.add_batch(
            topic=topic,
            partition=partition,
            offsets=[offset],
            timestamps_ms=[timestamp_ms],
            paths=path,
            rows=row,
            sizes=[size_bytes],
        )

    def add_batch(
        self,
        *,
        topic: str,
        partition: int,
        offsets: Sequence[int],
        timestamps_ms: Sequence[int],
        paths: Sequence[PartitionPath] | PartitionPath,
        rows: R,
        sizes: Sequence[int],
        position: int | None = None,
    ) -> None:
        """Buffer consecutive records of one partition; exactly as if each were added in turn
        (same buffers, same seals, same rows). `paths` is one path for all records or one
        per record; `position` (default: after the last offset) covers records dropped from
        the batch (dead-lettered).

        The archiver's hot path. When no record can trigger the stream-time rule (every
        timestamp is within `window` of the oldest open buffer and of each other, the usual
        case), the buffers of different hours are independent and each one takes its records
        as a few slices, cut only where the count or size rule seals; otherwise the batch is
        walked record by record.
        """
        n = len(offsets)
        if n != len(timestamps_ms) or n != len(sizes) or n != len(rows):
            raise ValueError("one offset, timestamp, size and row per record")
        if isinstance(paths, PartitionPath):
            uniform: PartitionPath | None = paths
        else:
            if len(paths) != n:
                raise ValueError("one path per record")
            uniform = paths[0] if n and all(p is paths[0] for p in paths) else None
        if not n:
            return
        state = self._state(topic, partition, offsets[0])
        now = self.clock.monotonic()
        oldest = min((b.first_timestamp_ms for b in state.open.values()), default=None)
        low = min(timestamps_ms)
        if max(timestamps_ms) - (low if oldest is None else min(oldest, low)) < self._window_ms:
            if uniform is not None:
                self._append_run(state, uniform, rows, None, offsets, timestamps_ms, sizes, now)
            else:
                assert not isinstance(paths, PartitionPath)
                groups: dict[PartitionPath, list[int]] = {}
                for i, path in enumerate(paths):
                    groups.setdefault(path, []).append(i)
                for path, idx in groups.items():
                    self._append_run(state, path, rows, idx, offsets, timestamps_ms, sizes, now)
        else:
            self._walk(state, paths, rows, offsets, timestamps_ms, sizes, now)
        state.position = offsets[-1] + 1 if position is None else position
        state.last_record_mono = now

    def _append_run(
        self,
        state: _PartitionState[R],
        path: PartitionPath,
        rows: R,
        idx: list[int] | None,
        offsets: Sequence[int],
        timestamps_ms: Sequence[int],
        sizes: Sequence[int],
        now: float,
    ) -> None:
        """Records `idx` (None: all) of one hour, none triggering the stream-time rule."""
        if idx is not None:
            offsets = [offsets[i] for i in idx]
            timestamps_ms = [timestamps_ms[i] for i in idx]
            sizes = [sizes[i] for i in idx]
        max_records, max_bytes = self.policy.max_records, self.policy.max_bytes
        total, pos = len(offsets), 0
        while pos < total:
            buffer = state.open.get(path)
            if buffer is None:
                buffer = state.open[path] = state.new_buffer(
                    path, offsets[pos], timestamps_ms[pos], now
                )
            take = min(max_records - buffer.count, total - pos)
            size = sum(sizes[pos : pos + take])
            if buffer.size_bytes + size >= max_bytes:
                # The record that reaches max_bytes is the last one of this buffer.
                cumulative = accumulate(sizes[pos : pos + take], initial=buffer.size_bytes)
                take = next(k for k, c in enumerate(cumulative) if c >= max_bytes)
                size = sum(sizes[pos : pos + take])
            end = pos + take
            if idx is None:
                chunk = rows if take == len(rows) else rows.slice(pos, take)
            else:
                chunk = rows.take(idx[pos:end])
            buffer._append(
                chunk,  # type: ignore[arg-type]  # Rows.slice/take return the same kind
                count=take,
                end_offset=offsets[end - 1],
                newest_ms=max(timestamps_ms[pos:end]),
                size=size,
            )
            self._buffered_bytes += size
            if buffer.count >= max_records:
                self._seal(state, buffer, "records")
            elif buffer.size_bytes >= max_bytes:
                self._seal(state, buffer, "bytes")
            pos = end

    def _walk(
        self,
        state: _PartitionState[R],
        paths: Sequence[PartitionPath] | PartitionPath,
        rows: R,
        offsets: Sequence[int],
        timestamps_ms: Sequence[int],
        sizes: Sequence[int],
        now: float,
    ) -> None:
        """Record by record, for batches where the stream-time rule may fire."""
        max_records, max_bytes = self.policy.max_records, self.policy.max_bytes
        taken: dict[int, tuple[Buffer[R], list[int]]] = {}  # id(buffer) → its indices
        for i, (offset, ts, size) in enumerate(zip(offsets, timestamps_ms, sizes, strict=True)):
            path = paths if isinstance(paths, PartitionPath) else paths[i]
            self._seal_by_stream_time(state, ts)
            buffer = state.open.get(path)
            if buffer is None:
                buffer = state.open[path] = state.new_buffer(path, offset, ts, now)
            taken.setdefault(id(buffer), (buffer, []))[1].append(i)
            buffer.count += 1
            buffer.end_offset = offset
            buffer.last_timestamp_ms = max(buffer.last_timestamp_ms, ts)
            buffer.size_bytes += size
            self._buffered_bytes += size
            if buffer.count >= max_records:
                self._seal(state, buffer, "records")
            elif buffer.size_bytes >= max_bytes:
                self._seal(state, buffer, "bytes")
        for buffer, idx in taken.values():
            chunk = rows if len(idx) == len(rows) else rows.take(idx)
            buffer.chunks.append(chunk)  # type: ignore[arg-type]  # take returns the same kind

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

    def seal_largest(self) -> Buffer[R] | None:
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

    def ready(self) -> list[Buffer[R]]:
        """Sealed buffers waiting to be written, oldest start offset first per partition."""
        out: list[Buffer[R]] = []
        for state in self._parts.values():
            out.extend(state.sealed)
        return out

    def mark_written(self, buffer: Buffer[R]) -> None:
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

    def _state(self, topic: str, partition: int, offset: int) -> _PartitionState[R]:
        state = self._parts.get((topic, partition))
        if state is None:
            state = self._parts[(topic, partition)] = _PartitionState(
                topic=topic, partition=partition, first_offset=offset
            )
        elif state.position is not None and offset < state.position:
            raise ValueError(
                f"{topic}[{partition}] went back from {state.position} to {offset}: "
                "drop the partition before seeking"
            )
        return state

    def _seal_by_stream_time(self, state: _PartitionState[R], timestamp_ms: int) -> None:
        for buffer in list(state.open.values()):
            if timestamp_ms - buffer.first_timestamp_ms >= self._window_ms:
                self._seal(state, buffer, "window")

    def _seal(self, state: _PartitionState[R], buffer: Buffer[R], reason: str) -> None:
        buffer.seal_reason = reason
        del state.open[buffer.path]
        state.sealed.append(buffer)

    @staticmethod
    def _unwritten(state: _PartitionState[R]) -> Iterator[Buffer[R]]:
        yield from state.open.values()
        yield from state.sealed

    @staticmethod
    def _safe_offset(state: _PartitionState[R]) -> int | None:
        starts = [b.start_offset for b in WindowBuffers._unwritten(state)]
        return min(starts) if starts else state.position
