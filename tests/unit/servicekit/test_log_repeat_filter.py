"""servicekit's RepeatFilter: a flood of identical warnings becomes a few lines, the next
one to pass says how many were held back; INFO always passes."""

from __future__ import annotations

import io
import logging

from servicekit.logging import RepeatFilter, configure_logging


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(
    msg: str, *args: object, level: int = logging.ERROR, name: str = "aiokafka"
) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_four_thousand_identical_errors_a_second_become_a_few_lines() -> None:
    clock = Clock()
    repeat = RepeatFilter(burst=3, interval_s=10.0, clock=clock)
    passed = []
    # A 13 s outage at 4,000 lines a second, each naming a different node/partition.
    for i in range(13 * 4000):
        clock.now = i / 4000
        r = record("Unable connect to node with id %s: %s", i % 3, "Connect call failed")
        if repeat.filter(r):
            passed.append((clock.now, r))
    assert len(passed) == 6  # 3 in each 10 s window
    assert all(r.getMessage().startswith("Unable connect to node") for _, r in passed)
    # The first line of the second window accounts for everything held back before it.
    first_of_second = passed[3][1]
    assert first_of_second.suppressed == 10 * 4000 - 3  # type: ignore[attr-defined]
    assert "similar suppressed]" in first_of_second.getMessage()
    # After the outage: the next failure of that kind passes and reports the rest.
    clock.now = 60.0
    after = record("Unable connect to node with id %s: %s", 1, "x")
    assert repeat.filter(after)
    assert after.suppressed == 3 * 4000 - 3  # type: ignore[attr-defined]


def test_kinds_are_counted_apart_and_info_is_never_held() -> None:
    repeat = RepeatFilter(burst=1, interval_s=10.0, clock=Clock())
    assert repeat.filter(record("a %s", 1)) and not repeat.filter(record("a %s", 2))
    assert repeat.filter(record("b %s", 1))  # another message
    assert repeat.filter(record("a %s", 1, name="faust"))  # another logger
    assert repeat.filter(record("a %s", 1, level=logging.WARNING))  # another level
    assert all(repeat.filter(record("tick", level=logging.INFO)) for _ in range(1000))


def test_configure_logging_installs_it(monkeypatch: object) -> None:
    import sys

    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)  # type: ignore[attr-defined]
    configure_logging("svc", json=False)
    log = logging.getLogger("aiokafka.conn")
    for _ in range(500):
        log.error("Unable connect to node with id %s", 1)
    lines = [line for line in stream.getvalue().splitlines() if "Unable connect" in line]
    assert len(lines) == 3
