"""The fault suite's figures (tests/chaos/chaos_harness.analyse): what counts as lost, as a
duplicate after dedup on event_id, as delayed, and how recovery is measured."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
from pulse_cli.scripts import load_script

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def harness() -> ModuleType:
    return load_script(REPO / "tests" / "chaos" / "chaos_harness.py", "pulse_chaos_harness")


def _run(
    harness: ModuleType, answered: dict[str, float], seen: dict[str, list[tuple[float, str]]]
) -> object:
    load = harness.Load("http://x", "k", "SKU", 100.0)
    load.accepted = {rid: harness.Accepted(due=t, answered=t) for rid, t in answered.items()}
    watcher = harness.Watcher("b", "SKU")
    for rid, copies in seen.items():
        for at, event_id in copies:
            watcher.first_seen.setdefault(rid, at)
            watcher.copies[rid] += 1
            watcher.event_ids[rid].add(event_id)
    archive = {rid: (1, 1) for rid in seen}
    return harness.analyse(
        "f", load, watcher, injected=100.0, fault_s=5.0, bound_s=15.0, archive=archive
    )


def test_identical_copies_are_re_emitted_not_duplicates(harness: ModuleType) -> None:
    result = _run(
        harness,
        {"a": 90.0, "b": 91.0},
        {"a": [(90.1, "e-a"), (105.0, "e-a")], "b": [(91.1, "e-b")]},
    )
    assert (result.lost, result.duplicates, result.re_emitted) == (0, 0, 1)


def test_a_second_event_id_for_one_review_is_a_duplicate_and_a_missing_one_is_lost(
    harness: ModuleType,
) -> None:
    result = _run(
        harness,
        {"a": 90.0, "b": 91.0, "c": 92.0},
        {"a": [(90.1, "e1"), (90.2, "e2")], "b": [(91.1, "e-b")]},
    )
    assert (result.lost, result.duplicates, result.archive_lost) == (1, 1, 1)


def test_recovery_runs_from_the_fault_to_the_last_delayed_record(harness: ModuleType) -> None:
    # before the fault: 0.1 s latencies; one answered just before it and stuck until 112 s
    answered = {f"r{i}": 90.0 + i for i in range(9)} | {"stuck": 99.5, "late": 101.0, "ok": 113.0}
    seen = {f"r{i}": [(90.1 + i, f"e{i}")] for i in range(9)}
    seen |= {"stuck": [(112.0, "s")], "late": [(110.0, "l")], "ok": [(113.2, "o")]}
    result = _run(harness, answered, seen)
    assert result.p99_base_s == pytest.approx(0.1)
    assert result.late_s == 2.0  # max(2 s, 3 × p99 before)
    assert result.delayed == 2
    assert result.recovery_s == pytest.approx(12.0)  # 112 − 100
    assert result.p99_fault_s == pytest.approx(9.0)  # "late": answered in the window, 9 s
