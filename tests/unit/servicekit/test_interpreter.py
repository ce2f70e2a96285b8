"""The collector and allocator tuning the stream services start with."""

from __future__ import annotations

import gc
import os
import platform
import subprocess
import sys
from collections.abc import Iterator

import pytest
from servicekit.interpreter import GC_YOUNG_THRESHOLD, tune_gc, tune_malloc


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


# A fetch response read as asyncio's StreamReader reads one: a bytearray grown in socket-sized
# chunks, then copied out as bytes; the minor page faults of ten such responses are printed.
_RESPONSES = """
import resource, sys
from servicekit.interpreter import tune_malloc
if sys.argv[1] == "tuned":
    assert tune_malloc()
chunk = bytes(256 * 1024)
def response():
    buffer = bytearray()
    while len(buffer) < 8 * 1024 * 1024:
        buffer.extend(chunk)
    data = bytes(buffer)
    buffer.clear()
    return len(data)
response()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    response()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _response_faults(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_"))}
    out = subprocess.run(
        [sys.executable, "-c", _RESPONSES, mode],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=60,
    )
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="M_TOP_PAD is glibc's")
def test_tune_malloc_keeps_freed_fetch_buffers_instead_of_faulting_them_in_again() -> None:
    default, tuned = _response_faults("default"), _response_faults("tuned")
    # Untuned, every response faults its pages in again (~2 per 4 KiB page: 22,000+ here).
    # A kernel that backs such buffers with huge pages (THP "always") shows no such cost.
    if default < 10_000:
        pytest.skip(f"untuned responses faulted only {default} times: nothing to save here")
    assert tuned * 10 < default


def test_tune_malloc_leaves_an_operators_setting_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert tune_malloc() is False
