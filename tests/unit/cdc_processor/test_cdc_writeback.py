"""WriteBack: reads see pending writes, flush writes each changed key once (or deletes it)."""

from __future__ import annotations

from typing import Any

from cdc_processor.writeback import WriteBack


class _Recording(dict[str, Any]):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.writes: list[tuple[str, Any]] = []

    def __setitem__(self, key: str, value: Any) -> None:
        self.writes.append((key, value))
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.writes.append((key, None))
        super().__delitem__(key)


def test_reads_see_pending_writes_and_flush_writes_each_key_once() -> None:
    table = _Recording({"a": 1, "gone": 0})
    view = WriteBack(table)
    view.current_event = "e1"
    view["a"] = 2
    view["b"] = 1
    view.current_event = "e2"
    view["b"] = view["b"] + 1
    del view["gone"]
    assert view["a"] == 2 and view.get("gone") is None and "gone" not in view
    assert sorted(view) == ["a", "b"] and len(view) == 2
    assert table.writes == []  # nothing reaches the table before flush
    events: list[Any] = []
    view.flush(events.append)
    assert sorted(table.writes, key=str) == [("a", 2), ("b", 2), ("gone", None)]
    assert dict(table) == {"a": 2, "b": 2}
    # the event that last touched each key is current when that key is written
    assert sorted(events) == ["e1", "e2", "e2"]
    assert view.pending == 0


def test_delete_of_a_missing_key_raises_and_set_after_delete_wins() -> None:
    view = WriteBack(_Recording())
    try:
        del view["x"]
    except KeyError:
        pass
    else:
        raise AssertionError("deleting a missing key must raise KeyError")
    view["x"] = 1
    del view["x"]
    view["x"] = 3
    view.flush()
    assert view.table == {"x": 3}


def test_get_reads_pending_then_table_then_default() -> None:
    view = WriteBack(_Recording({"kept": 5, "gone": 1}))
    view["new"] = 2
    del view["gone"]
    assert view.get("new") == 2  # pending write
    assert view.get("kept") == 5  # table
    assert view.get("gone", "d") == "d"  # pending delete
    assert view.get("never") is None and view.get("never", 0) == 0
