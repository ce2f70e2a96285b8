"""Window buffers: seal rules, deterministic boundaries and the offsets safe to commit."""

from datetime import UTC, datetime, timedelta

from s3_archiver.object_keys import PartitionPath
from s3_archiver.window_buffer import BufferPolicy, WindowBuffers
from servicekit.clock import FakeClock

H10 = PartitionPath("2026-11-22", 10)
H11 = PartitionPath("2026-11-22", 11)
T0 = 1_795_000_000_000  # Kafka timestamp (ms) of the first record


def make(**policy: object) -> tuple[WindowBuffers[str], FakeClock]:
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
    b: WindowBuffers[str],
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
        row=f"r{offset}",
        size_bytes=size,
    )


def boundaries(b: WindowBuffers[str]) -> list[tuple[int, int, int]]:
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
                objects[x.start_offset] = list(x.rows)
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


def test_add_batch_makes_the_same_buffers_as_adding_one_by_one() -> None:
    import random

    rng = random.Random(7)
    for _ in range(30):
        n = rng.randint(1, 300)
        log = [
            (o, rng.choice([H10, H11]), T0 + o * rng.randint(0, 3_000) // 2, rng.randint(1, 40))
            for o in range(n)
        ]
        policy = dict(
            max_records=rng.randint(1, 40),
            max_bytes=rng.randint(20, 800),
            window=timedelta(seconds=rng.randint(1, 60)),
        )
        one, _ = make(**policy)
        for o, path, ts, size in log:
            add(one, o, path, ts=ts, size=size)
        many, _ = make(**policy)
        cut = rng.randint(0, n)
        for part in (log[:cut], log[cut:]):
            many.add_batch(
                topic="t",
                partition=0,
                offsets=[x[0] for x in part],
                timestamps_ms=[x[2] for x in part],
                paths=[x[1] for x in part],
                rows=[f"r{x[0]}" for x in part],
                sizes=[x[3] for x in part],
            )

        def shape(b: WindowBuffers[str]) -> list[tuple[object, ...]]:
            return [(x.start_offset, x.end_offset, x.seal_reason, tuple(x.rows)) for x in b.ready()]

        assert shape(one) == shape(many)
        assert one.committable() == many.committable()
        assert one.buffered_bytes == many.buffered_bytes
