"""CPU seconds used per part of the pipeline between two snapshots (Linux /proc, no deps).

The five services are the processes in `.stack/run/<service>.pid` (written by `pulse up`) and
their descendants (ingest's uvicorn workers); the stack's PostgreSQL, Kafka, Connect, nginx and
S3Proxy and the benchmark itself are recognised by command line; everything else on the
machine is "other" (the shared machine's noise, e.g. another engineer's own ingest instance).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")
RUN_DIR = Path(__file__).resolve().parents[2] / ".stack" / "run"
SERVICES = ("ingest", "cdc_processor", "s3_archiver", "crawler", "query")
GROUPS: tuple[tuple[str, str], ...] = (
    ("bench", "bench/e2e/latency.py"),
    ("postgres", "postgres"),
    ("kafka", "kafka.Kafka"),
    ("connect", "ConnectDistributed"),
    ("nginx", "nginx"),
    ("s3proxy", "s3proxy"),
)


def _group(cmdline: str) -> str:
    for name, needle in GROUPS:
        if needle in cmdline:
            return name
    return "other"


def _service_pids() -> dict[int, str]:
    pids: dict[int, str] = {}
    for name in SERVICES:
        try:
            pids[int((RUN_DIR / f"{name}.pid").read_text().strip())] = name
        except (OSError, ValueError):
            continue
    return pids


def _processes() -> Iterator[tuple[int, str, list[str]]]:
    """(pid, group by command line, /proc/<pid>/stat fields from field 3 (state) on)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        yield int(entry.name), _group(cmdline), stat[stat.rindex(")") + 2 :].split()


def snapshot(roots: dict[int, str] | None = None) -> dict[int, tuple[str, float]]:
    """pid → (group, CPU seconds so far). `roots` names more process trees, pid → group, e.g.
    an ingest instance a benchmark started itself (with its workers)."""
    services = {**_service_pids(), **(roots or {})}
    parents: dict[int, int] = {}
    raw: dict[int, tuple[str, float]] = {}
    for pid, group, fields in _processes():
        parents[pid] = int(fields[1])
        raw[pid] = (group, (int(fields[11]) + int(fields[12])) / _TICK)
    out: dict[int, tuple[str, float]] = {}
    for pid, (group, cpu) in raw.items():
        ancestor, hops = pid, 0
        while ancestor not in services and ancestor in parents and hops < 16:
            ancestor, hops = parents[ancestor], hops + 1
        out[pid] = (services.get(ancestor, group), cpu)
    return out


def youngest_age_s(groups: tuple[str, ...]) -> float | None:
    """Seconds since the youngest running process of `groups` (e.g. the stack's JVMs) started;
    None when none runs."""
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    ages = [uptime - int(f[19]) / _TICK for _, g, f in _processes() if g in groups]  # field 22
    return min(ages) if ages else None


def used(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> dict[str, float]:
    """CPU seconds per group between the snapshots (processes born in between count whole)."""
    totals: dict[str, float] = {}
    for pid, (group, cpu) in after.items():
        start = before.get(pid, (group, 0.0))[1]
        totals[group] = totals.get(group, 0.0) + max(0.0, cpu - start)
    return {k: round(v, 2) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}


def schedule(pid: int) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one) of all of `pid`'s threads so
    far, from /proc/<pid>/task/*/schedstat. The second one tells a starved process (runnable,
    no core free: the machine's load) from one that waits on I/O (sleeping, not counted)."""
    ran_ns = waited_ns = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            ran, waited, _slices = (task / "schedstat").read_text().split()
        except (OSError, ValueError):
            continue  # a thread that ended meanwhile
        ran_ns += int(ran)
        waited_ns += int(waited)
    return ran_ns / 1e9, waited_ns / 1e9


def py_spy(pid: int, *, to: Path, seconds: float) -> subprocess.Popen[bytes]:
    """py-spy (dev dependency) recording `pid` for `seconds` into `to` (speedscope format:
    every thread, idle samples left out, so it shows where the process's CPU goes)."""
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(pid),
         "--duration", str(max(1, int(seconds))), "--rate", "200", "--format", "speedscope",
         "--output", str(to)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
