"""Tracing's cost when off (issue 27: at most 3 % on the ingest and tick benchmarks).

A: this checkout, tracing off (no OTEL_* set: the default). B, the baseline: the same
benchmarks on the code without the tracing hooks, i.e. the commit before the one that added
`servicekit/tracing.py` (`--base` to choose another; `git archive`, its packages first on
PYTHONPATH, so B imports that tree's `contracts`, `servicekit`, `ingest` and `cdc_processor`).
Everything else is shared: the machine, the stack, the benchmark code, the settings. A and B
alternate (A B A B ..., B first every other round) for several rounds in one run; each figure
is the median of its rounds and the ratio is A/B (1.00 = no cost). B is the code as it was
then: while later changes to these packages are small beside the hooks, the ratio is the
hooks' cost; after larger ones, pass a `--base` closer to them.

1. ingest: both apps run side by side on this helper's ports (61120 A, 61121 B; PostgreSQL
   of the stack); `wrk` (bench/ingest's script) sends single-review POST /v1/reviews straight
   to each in turn, then POST /v1/ticks/batch of 1,000 ticks: req/s and rows/s, and the
   app's CPU per request or row (from /proc), the steadier figure on a shared machine.
2. ticks: bench/cdc_processor/run.py --paths ticks of each tree (the quotes agent: candle
   table write per tick, on the stack's broker): ticks/s, and CPU µs per tick, the steadier
   figure on a shared machine.

  uv run python bench/tracing/run.py [--rounds 6] [--slice 3] [--ticks 20000] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
from pulse_cli.scripts import load_script

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("libs/contracts", "libs/servicekit", "services/ingest", "services/cdc_processor")
PORT_A, PORT_B = 61120, 61121
bench_ingest = load_script(REPO / "bench" / "ingest" / "bench_ingest.py", "pulse_bench_ingest")


def baseline_tree(rev: str) -> Path:
    """`rev`'s packages and benchmarks, unpacked under /tmp (no git worktree is added)."""
    root = Path(tempfile.mkdtemp(prefix="pulse-trace-base-"))
    archive = subprocess.run(
        ["git", "archive", rev, *PACKAGES, "bench"], cwd=REPO, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(root, filter="data")
    return root


def tree_env(env: dict[str, str], tree: Path | None) -> dict[str, str]:
    """The environment of a process of tree A (None) or of the baseline tree."""
    clean = {k: v for k, v in env.items() if not k.startswith("OTEL_")}  # tracing off
    if tree is None:
        return clean
    paths = [str(tree / p / "src") for p in PACKAGES]
    return {**clean, "PYTHONPATH": os.pathsep.join(paths)}


def imported_from(env: dict[str, str]) -> str:
    code = "import ingest, cdc_processor; print(ingest.__file__, cdc_processor.__file__)"
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


def check(result: dict[str, float]) -> None:
    """Only answered requests count (figures use `ok`); a few 503s from a database under
    load are reported, more than 5 % stop the run."""
    failed = result["requests"] - result["ok"]
    if failed:
        print(f"    ({failed:.0f} of {result['requests']:.0f} requests not 2xx)", flush=True)
    if failed > 0.05 * result["requests"]:
        raise SystemExit(f"too many failed requests: {result}")


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def ingest_app(env: dict[str, str], port: int) -> Iterator[tuple[str, int]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest"],
        env={**env, "INGEST_HTTP_PORT": str(port), "INGEST_LOG_LEVEL": "WARNING"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        bench_ingest.wait_healthy(url, proc)
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def per_unit_cpu(name: str, cpu: dict[str, list[float]], unit: str) -> dict[str, Any]:
    """CPU per request or record: lower is better, so the ratio is B/A (1.00 = no cost)."""
    a, b = statistics.median(cpu["A"]), statistics.median(cpu["B"])
    return {"name": name, "unit": unit, "A": cpu["A"], "B": cpu["B"], "median_A": a,
            "median_B": b, "ratio": b / a}  # fmt: skip


def alternate(
    rounds: int, measure: Callable[[str], float], label: str, unit: str
) -> dict[str, Any]:
    """A B A B ... (B first on odd rounds, so neither side always goes first)."""
    got: dict[str, list[float]] = {"A": [], "B": []}
    for n in range(rounds):
        for side in ("A", "B") if n % 2 == 0 else ("B", "A"):
            got[side].append(measure(side))
        print(
            f"  {label} round {n + 1}: A {got['A'][-1]:,.1f}  B {got['B'][-1]:,.1f} {unit}",
            flush=True,
        )
    a, b = statistics.median(got["A"]), statistics.median(got["B"])
    return {"name": label, "unit": unit, "A": got["A"], "B": got["B"], "median_A": a,
            "median_B": b, "ratio": a / b}  # fmt: skip


def ingest_figures(args: argparse.Namespace, env: dict[str, str], base: Path) -> list[Any]:
    key = env["PULSE_API_KEY"]
    sku = f"TRACE-BENCH-{int(time.time())}"
    with (
        ingest_app(tree_env(env, None), PORT_A) as (a, pid_a),
        ingest_app(tree_env(env, base), PORT_B) as (b, pid_b),
    ):
        urls, pids = {"A": a, "B": b}, {"A": pid_a, "B": pid_b}
        cpu_review: dict[str, list[float]] = {"A": [], "B": []}
        cpu_tick: dict[str, list[float]] = {"A": [], "B": []}
        headers = {"X-API-Key": key, "Idempotency-Key": sku}
        product = {"sku": sku, "name": "Bench kettle", "brand": "Acme", "category": "home"}
        httpx.post(f"{a}/v1/products", json=product, headers=headers, timeout=10)
        review = json.dumps(
            {"product_sku": sku, "rating": 4, "title": "Bench", "locale": "en",
             "body": "Works as expected, pours well."}
        )  # fmt: skip
        ticks, _ = bench_ingest.ticks_body(1_000)

        def posted(
            side: str, path: str, body: str, *, connections: int, rows: int, cpu: list[float]
        ) -> float:
            """`wrk` on one side for a slice: rows/s, and the app's CPU µs per row into `cpu`."""
            used = cpu_s(pids[side])
            result = bench_ingest.wrk(
                urls[side], path, body, key,
                threads=1, connections=connections, duration_s=args.slice,
            )  # fmt: skip
            check(result)
            cpu.append((cpu_s(pids[side]) - used) / (result["ok"] * rows) * 1e6)
            return float(result["ok_rps"]) * rows

        def reviews(side: str) -> float:
            return posted(side, "/v1/reviews", review, connections=32, rows=1, cpu=cpu_review[side])

        def tick_rows(side: str) -> float:
            return posted(
                side, "/v1/ticks/batch", ticks, connections=2, rows=1_000, cpu=cpu_tick[side]
            )

        bench_ingest.wrk(a, "/v1/reviews", review, key, threads=1, connections=8, duration_s=1)
        bench_ingest.wrk(b, "/v1/reviews", review, key, threads=1, connections=8, duration_s=1)
        return [
            alternate(args.rounds, reviews, "ingest POST /v1/reviews", "req/s"),
            per_unit_cpu("ingest CPU per review POST", cpu_review, "us"),
            alternate(args.rounds, tick_rows, "ingest POST /v1/ticks/batch", "rows/s"),
            per_unit_cpu("ingest CPU per tick row", cpu_tick, "us"),
        ]


_AGENT = re.compile(r"ticks:\s+bare loop ([\d,]+)/s, agent ([\d,]+)/s")
_CPU = re.compile(r"cpu agent \S+: ([\d.]+) us/record")


def tick_figures(args: argparse.Namespace, env: dict[str, str], base: Path) -> list[Any]:
    cpu: dict[str, list[float]] = {"A": [], "B": []}

    def run(side: str) -> float:
        tree = REPO if side == "A" else base
        out = subprocess.run(
            [sys.executable, str(tree / "bench" / "cdc_processor" / "run.py"), "--paths",
             "ticks", "--reviews", "1", "--ticks", str(args.ticks)],
            env=tree_env(env, None if side == "A" else base), cwd=REPO,
            capture_output=True, text=True, timeout=900, check=True,
        ).stdout  # fmt: skip
        agent = _AGENT.search(out)
        used = [float(m) for m in _CPU.findall(out)]
        assert agent and used, out
        cpu[side].append(used[-1])
        return float(agent.group(2).replace(",", ""))

    return [
        alternate(args.rounds, run, "cdc_processor ticks (quotes agent)", "ticks/s"),
        per_unit_cpu("cdc_processor CPU per tick", cpu, "us"),
    ]


def before_tracing() -> str:
    """The commit before the one that added servicekit/tracing.py (the hooks' baseline)."""
    added = subprocess.run(
        ["git", "log", "--diff-filter=A", "--format=%H", "--",
         "libs/servicekit/src/servicekit/tracing.py"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    if not added:
        raise SystemExit("no commit adds servicekit/tracing.py here (shallow clone?): use --base")
    return subprocess.run(
        ["git", "rev-parse", f"{added[-1]}^"], cwd=REPO, capture_output=True, text=True,
        check=True,
    ).stdout.strip()  # fmt: skip


def result(figure: dict[str, Any]) -> dict[str, Any]:
    """One figure in bench/README.md's convention: value A, baseline B, ratio A/B (CPU figures
    as their inverse, so higher is better and the ratio reads the same way)."""
    cpu = figure["unit"] == "us"
    value, baseline = (
        (1e6 / figure["median_A"], 1e6 / figure["median_B"])
        if cpu
        else (figure["median_A"], figure["median_B"])
    )
    return {
        "name": f"{figure['name']}{' (per CPU-second)' if cpu else ''}, tracing off",
        "value": round(value, 1),
        "unit": "per CPU-s" if cpu else figure["unit"],
        "baseline": round(baseline, 1),
        "ratio": round(value / baseline, 3),
        "target": ">= 0.97x the code without tracing hooks",
        "pass": value / baseline >= 0.97,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--slice", type=int, default=3, help="seconds per wrk slice")
    parser.add_argument("--ticks", type=int, default=20_000)
    parser.add_argument("--base", default=None, help="baseline revision (default: merge base)")
    parser.add_argument("--only", choices=("ingest", "ticks"), default=None)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 1 s, 3,000 ticks")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.slice, args.ticks = 2, 1, 3_000
    env = bench_ingest.env_from_stack()
    rev = args.base or before_tracing()
    base = baseline_tree(rev)
    try:
        print(f"A: {imported_from(tree_env(env, None))}")
        print(f"B ({rev[:10]}): {imported_from(tree_env(env, base))}")
        print(f"load average at start: {os.getloadavg()}", flush=True)
        figures = []
        if args.only in (None, "ingest"):
            figures += ingest_figures(args, env, base)
        if args.only in (None, "ticks"):
            figures += tick_figures(args, env, base)
        print(f"load average at end: {os.getloadavg()}")
        for f in figures:
            verdict = "within 3 %" if f["ratio"] >= 0.97 else "over 3 %"
            print(
                f"{f['name']}: A (tracing off) {f['median_A']:,.1f} {f['unit']}, "
                f"B (no hooks) {f['median_B']:,.1f}, ratio {f['ratio']:.3f} ({verdict})"
            )
        print(json.dumps({"figures": [result(f) for f in figures]}))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
