"""bench/e2e/_cpu.py: a process tree named in `roots` is counted as that part, workers included.

The ingest bench starts its own ingest (not in `.stack/run`), whose uvicorn workers are its
children: their CPU must land on "ingest", not on "other".
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

# A parent that starts one busy child (a stand-in for a uvicorn worker) and waits for it.
_SPIN = "import time\nend = time.monotonic() + 5\nwhile time.monotonic() < end: pass"
_TREE = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {_SPIN!r}])"


@pytest.mark.timeout(30)
def test_a_named_tree_counts_its_workers_cpu(bench_cpu_module: ModuleType) -> None:
    cpu = bench_cpu_module
    parent = subprocess.Popen([sys.executable, "-c", _TREE], start_new_session=True)
    try:
        # Wait for the busy child to exist: on a loaded machine the parent's interpreter can
        # take longer than a fixed sleep to start it, and a snapshot without it counts nothing.
        children = f"/proc/{parent.pid}/task/{parent.pid}/children"
        deadline = time.monotonic() + 20
        while not Path(children).read_text().split():
            assert time.monotonic() < deadline, "the busy child never started"
            time.sleep(0.05)
        time.sleep(0.2)  # past the child's own interpreter start
        roots = {parent.pid: "ingest"}
        named0, plain0 = cpu.snapshot(roots), cpu.snapshot()
        time.sleep(1.0)
        named1, plain1 = cpu.snapshot(roots), cpu.snapshot()
    finally:
        os.killpg(parent.pid, signal.SIGKILL)  # the child too
        parent.wait()
    named, plain = cpu.used(named0, named1), cpu.used(plain0, plain1)
    # The child spun for the whole second: most of a core, counted as the tree's part. A real
    # ingest may run beside the test (the stack's services, left up by another tier): it
    # counts as "ingest" in both snapshots, so the tree is what naming it adds.
    assert named.get("ingest", 0.0) - plain.get("ingest", 0.0) >= 0.5, (named, plain)
    # Without the root it is nobody's: the same CPU lands on "other".
    assert plain.get("other", 0.0) >= 0.5, plain


@pytest.mark.timeout(30)
def test_schedule_counts_a_busy_process_time_on_a_cpu(bench_cpu_module: ModuleType) -> None:
    spinner = subprocess.Popen([sys.executable, "-c", _SPIN])
    try:
        ran_before, waited_before = bench_cpu_module.schedule(spinner.pid)
        cpu_before = _cpu_s(spinner.pid)
        time.sleep(1.0)
        ran, waited = bench_cpu_module.schedule(spinner.pid)
        cpu = _cpu_s(spinner.pid) - cpu_before
    finally:
        spinner.kill()
        spinner.wait()
    # on a CPU: what /proc/<pid>/stat counts too (its clock ticks are coarser); runnable but
    # not running: whatever the machine's load took, never negative
    assert ran - ran_before == pytest.approx(cpu, abs=0.1) and ran - ran_before > 0
    assert waited - waited_before >= 0


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
