"""The collector tuning the stream services start with."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from servicekit.interpreter import GC_YOUNG_THRESHOLD, tune_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_gc")
def test_tune_gc_freezes_start_up_objects_and_spaces_young_passes() -> None:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    tune_gc()
    assert gc.get_freeze_count() > 0  # this process's start-up objects are out of view
    assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD > 700
