"""Window buffers: seal rules, deterministic boundaries and the offsets safe to commit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from s3_archiver.object_keys import PartitionPath
from s3_archiver.window_buffer import Buffer, BufferPolicy, WindowBuffers
from servicekit.clock import FakeClock


class ListRows(tuple[str, ...]):
    """The `Rows` a test buffers: one string per record (the archiver buffers Arrow tables)."""

    def slice(self, offset: int, length: int) -> ListRows:
        return ListRows(self[offset : offset + length])

    def take(self, indices: Sequence[int]) -> ListRows:
        return ListRows(self[i] for i in indices)


def rows_of(buffer: Buffer[ListRows]) -> list[str]:
    return [r for chunk in buffer.chunks for r in chunk]


H10 = PartitionPath("2026-11-22", 10)
H11 = PartitionPath("2026-11-22", 11)
T0 = 1_795_000_000_000  # Kafka timestamp (ms) of the first record


def make(**policy: object) -> tuple[WindowBuffers[ListRows], FakeClock]:
    clock = FakeClock(datetime(2026, 11, 22, 12, tzinfo=UTC))
    defaults: dict[str, object] = dict(
        max_records=1000,
        max_bytes=10**9,
        window=timedelta(seconds=60),
        idle_grace=timedelta(seconds=5),
    )
    defaults.update(policy)
    return WindowBuffers(BufferPolicy(**defaults), clock), clock  # type: ignore[arg-type]


def add(
    b: WindowBuffers[ListRows],
    offset: int,
    path: PartitionPath = H10,
    *,
    ts: int | None = None,
    partition: int = 0,
    size: int = 10,
) -> None:
    b.add(
        topic="t",
        partition=partition,
        offset=offset,
        timestamp_ms=T0 if ts is None else ts,
        path=path,
        row=ListRows([f"r{offset}"]),
        size_bytes=size,
    )


def boundaries(b: WindowBuffers[ListRows]) -> list[tuple[int, int, int]]:
    return [(x.partition, x.start_offset, x.end_offset) for x in b.ready()]


def test_seals_when_record_count_reached() -> None:
    b, _ = make(max_records=3)
    for o in range(7):
        add(b, o)
    assert boundaries(b) == [(0, 0, 2), (0, 3, 5)]
    assert b.ready()[0].seal_reason == "records"


def test_seals_when_byte_size_reached() -> None:
    b, _ = make(max_bytes=25)
    for o in range(4):
        add(b, o, size=10)
    assert boundaries(b) == [(0, 0, 2)]
    assert b.ready()[0].seal_reason == "bytes"


def test_seals_when_a_later_record_is_a_window_past_the_first_in_stream_time() -> None:
    b, _ = make()
    add(b, 0, ts=T0)
    add(b, 1, ts=T0 + 59_999)
    add(b, 2, ts=T0 + 60_000)  # closes [0, 1]; itself opens the next buffer
    assert boundaries(b) == [(0, 0, 1)]
    assert b.ready()[0].seal_reason == "window"


def test_flushes_quiet_partition_within_window_plus_grace() -> None:
    b, clock = make()
    add(b, 0)
    clock.advance(59)
    b.seal_idle()
    assert b.ready() == []
    clock.advance(6)  # 65 s <= window (60) + grace (5)
    b.seal_idle()
    assert boundaries(b) == [(0, 0, 0)]
    assert b.ready()[0].seal_reason == "idle"


def test_busy_partition_is_not_sealed_as_idle() -> None:
    b, clock = make()
    for o in range(100):
        add(b, o, ts=T0 + o)  # stream time barely moves
        clock.advance(1)
        b.seal_idle()
    assert b.ready() == []


def test_idle_partition_seals_all_its_hours_so_the_commit_can_reach_its_position() -> None:
    b, clock = make()
    add(b, 0, H10)
    add(b, 1, H11)
    clock.advance(70)
    b.seal_idle()
    assert sorted(boundaries(b)) == [(0, 0, 0), (0, 1, 1)]
    for x in b.ready():
        b.mark_written(x)
    assert b.committable() == {("t", 0): 2}


def test_commit_never_passes_a_record_buffered_for_another_hour() -> None:
    b, _ = make(max_records=2)
    add(b, 0, H10)  # stays open
    add(b, 1, H11)
    add(b, 2, H11)  # H11 [1, 2] seals
    (sealed,) = b.ready()
    assert b.committable() == {("t", 0): 0}  # nothing written yet
    b.mark_written(sealed)
    assert b.committable() == {("t", 0): 0}  # offset 0 is still buffered for H10
    add(b, 3, H10)  # H10 [0, 3] seals
    (h10,) = b.ready()
    b.mark_written(h10)
    assert b.committable() == {("t", 0): 4}


def test_nothing_is_committable_while_sealed_buffers_are_unwritten() -> None:
    b, _ = make(max_records=1)
    add(b, 0)
    add(b, 1)
    assert b.committable() == {("t", 0): 0}


def test_replay_from_committed_offset_makes_identical_objects() -> None:
    """The same log replayed from a commit point yields the same (start, end, rows) objects."""
    log = [(o, H10 if o % 3 else H11, T0 + o * 7_000) for o in range(60)]

    def run(start: int, until: int) -> tuple[dict[int, list[str]], int | None]:
        b, _ = make(max_records=4, window=timedelta(seconds=30))
        objects: dict[int, list[str]] = {}
        for o, path, ts in log[start:until]:
            add(b, o, path, ts=ts)
            for x in b.ready():
                objects[x.start_offset] = rows_of(x)
                b.mark_written(x)
        return objects, b.committable().get(("t", 0))

    first, committed = run(0, 40)  # crash after offset 39: open buffers are lost
    assert committed is not None and committed < 40
    second, _ = run(committed, 60)  # restart at the committed offset
    for start in set(first) & set(second):
        assert first[start] == second[start], f"object +{start} differs"
    written = {r for rows in first.values() for r in rows} | {
        r for rows in second.values() for r in rows
    }
    full, _ = run(0, 60)
    assert {r for rows in full.values() for r in rows} <= written


def test_dead_lettered_record_moves_position_only() -> None:
    b, _ = make()
    b.skip(topic="t", partition=0, offset=0)
    assert b.committable() == {("t", 0): 1}
    b.mark_committed({("t", 0): 1})
    assert b.committable() == {}


def test_memory_pressure_seals_the_largest_open_buffer() -> None:
    b, _ = make()
    add(b, 0, H10, size=5)
    add(b, 1, H11, size=50)
    sealed = b.seal_largest()
    assert sealed is not None and sealed.path == H11 and sealed.seal_reason == "pressure"
    assert b.buffered_bytes == 55
    b.mark_written(sealed)
    assert b.buffered_bytes == 5


def test_revoked_partition_is_forgotten() -> None:
    b, _ = make()
    add(b, 0, partition=1)
    b.drop_partition("t", 1)
    assert b.open_buffers == 0 and b.buffered_bytes == 0 and b.committable() == {}


def test_oldest_unwritten_age_follows_the_clock() -> None:
    b, clock = make()
    add(b, 0)
    clock.advance(12)
    assert b.oldest_unwritten_age_s() == 12
    assert b.commit_lag() == {("t", 0): 1}


def reference(
    log: list[tuple[int, PartitionPath, int, int]], policy: dict[str, object]
) -> list[tuple[object, ...]]:
    """The seal rules applied record by record, written as plainly as possible."""
    window_ms = int(policy["window"].total_seconds() * 1000)  # type: ignore[attr-defined]
    open_: dict[PartitionPath, dict[str, object]] = {}
    done: list[tuple[object, ...]] = []

    def close(path: PartitionPath, reason: str | None) -> None:
        b = open_.pop(path)
        rows: list[str] = b["rows"]  # type: ignore[assignment]
        done.append((b["start"], int(rows[-1][1:]), reason, tuple(rows)))

    for o, path, ts, size in log:
        for p, b in list(open_.items()):
            if ts - b["first"] >= window_ms:  # type: ignore[operator]
                close(p, "window")
        b = open_.setdefault(path, {"start": o, "first": ts, "rows": [], "size": 0})
        b["rows"].append(f"r{o}")  # type: ignore[attr-defined]
        b["size"] += size  # type: ignore[operator]
        if len(b["rows"]) >= policy["max_records"]:  # type: ignore[arg-type, operator]
            close(path, "records")
        elif b["size"] >= policy["max_bytes"]:  # type: ignore[operator]
            close(path, "bytes")
    for p in list(open_):
        close(p, None)
    return sorted(done)


def shape(b: WindowBuffers[ListRows]) -> list[tuple[object, ...]]:
    sealed = [(x.start_offset, x.end_offset, x.seal_reason, tuple(rows_of(x))) for x in b.ready()]
    b.seal_all()
    opened = [
        (x.start_offset, x.end_offset, None, tuple(rows_of(x)))
        for x in b.ready()
        if x.seal_reason == "shutdown"
    ]
    return sorted(sealed + opened)


def test_add_batch_makes_the_same_buffers_as_adding_records_one_by_one() -> None:
    """Random logs, cut into random batches: the vectorised path (one hour or several, no
    stream-time seal possible) and the record-by-record walk both match the plain rules."""
    import random

    rng = random.Random(7)
    for case in range(300):
        n = rng.randint(1, 300)
        hours = [H10] if case % 3 == 0 else [H10, H11]
        step = rng.choice([0, 1, 50, 3_000])  # ms between records: 0 never seals by time
        log = [
            (o, rng.choice(hours), T0 + o * rng.randint(0, step), rng.randint(1, 40))
            for o in range(n)
        ]
        policy: dict[str, object] = dict(
            max_records=rng.choice([1, rng.randint(2, 40), 10_000]),
            max_bytes=rng.choice([rng.randint(20, 800), 10**9]),
            window=timedelta(seconds=rng.randint(1, 60)),
        )
        batched, _ = make(**policy)
        cuts = sorted(rng.sample(range(1, n), min(n - 1, rng.randint(0, 5)))) if n > 1 else []
        for lo, hi in zip([0, *cuts], [*cuts, n], strict=True):
            part = log[lo:hi]
            same = len({x[1] for x in part}) == 1
            batched.add_batch(
                topic="t",
                partition=0,
                offsets=[x[0] for x in part],
                timestamps_ms=[x[2] for x in part],
                paths=part[0][1] if same and rng.random() < 0.5 else [x[1] for x in part],
                rows=ListRows(f"r{x[0]}" for x in part),
                sizes=[x[3] for x in part],
            )
        expected = reference(log, policy)
        buffered = sum(x[3] for x in log)
        assert batched.buffered_bytes == buffered
        assert shape(batched) == expected, f"case {case}"


def test_add_batch_position_covers_dropped_records() -> None:
    b, _ = make()
    b.add_batch(
        topic="t",
        partition=0,
        offsets=[0, 1],
        timestamps_ms=[T0, T0],
        paths=H10,
        rows=ListRows(["r0", "r1"]),
        sizes=[1, 1],
        position=3,  # offset 2 was dead-lettered
    )
    (buffer,) = b.seal_all() and b.ready()
    b.mark_written(buffer)
    assert b.committable() == {("t", 0): 3}
