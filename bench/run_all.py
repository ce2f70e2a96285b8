"""`make bench`: every benchmark under bench/<service>/ plus bench/e2e/, one table at the end.

Discovery and the output convention are in bench/README.md: per folder, `run.py`, else
`bench.py`, else every `bench_*.py`, plus every `*.py` in bench/e2e/; each script's last
stdout line that parses as JSON with a `figures` key is its result. A script that fails or
prints no result becomes an ERROR row; the runner goes on.

The end-to-end scripts need the pipeline services. When ingest does not answer, the runner
starts them just before bench/e2e/ (`bench/e2e/_services.py`: `pulse up` on bench consumer
groups fast-forwarded to the log end, so another benchmark's backlog is not measured as
latency) and stops them right after (`pulse down --services-only`, never the stack), so the
services' own benchmarks still run without them and `make bench` works from a cold checkout.
Services that were already running are used as they are.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any

from pulse_cli.stackenv import read_env_file

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
INGEST_HEALTH = "http://127.0.0.1:58001/healthz"  # `pulse up`'s ingest (cli/processes.py)


def discover(only: set[str] | None = None) -> list[Path]:
    scripts: list[Path] = []
    for folder in sorted(
        p for p in BENCH.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))
    ):
        if only and folder.name not in only:
            continue
        if folder.name == "e2e":
            scripts.extend(sorted(p for p in folder.glob("*.py") if not p.name.startswith("_")))
        elif (folder / "run.py").is_file():
            scripts.append(folder / "run.py")
        elif (folder / "bench.py").is_file():
            scripts.append(folder / "bench.py")
        else:
            scripts.extend(sorted(folder.glob("bench_*.py")))
    return scripts


def parse_result(stdout: str) -> list[dict[str, Any]] | None:
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            document = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(document, dict) and isinstance(document.get("figures"), list):
            return [f for f in document["figures"] if isinstance(f, dict)]
    return None


def stack_environment() -> dict[str, str]:
    return {**read_env_file(ROOT / ".stack" / "env"), **os.environ}


def services_running(url: str = INGEST_HEALTH) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # fixed URL
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def e2e_services() -> ModuleType:
    """bench/e2e/_services.py: the services on bench consumer groups (see its docstring)."""
    spec = importlib.util.spec_from_file_location("_services", BENCH / "e2e" / "_services.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="pass --quick to every script")
    parser.add_argument("--only", nargs="*", help="bench folders to run (default: all)")
    parser.add_argument("--timeout-s", type=float, default=900.0, help="per script")
    parser.add_argument(
        "--no-services", action="store_true", help="never start the services for bench/e2e/"
    )
    args = parser.parse_args()
    rows: list[tuple[str, dict[str, Any]]] = []
    started_services = False
    for script in discover(set(args.only) if args.only else None):
        label = str(script.relative_to(BENCH))
        in_e2e = script.parent.name == "e2e"
        if started_services and not in_e2e:
            print("== stopping the services started for bench/e2e/", file=sys.stderr, flush=True)
            e2e_services().down()
            started_services = False
        if in_e2e and not args.no_services and not started_services and not services_running():
            print("== starting the services for bench/e2e/", file=sys.stderr, flush=True)
            started_services = True
            os.environ.update({**e2e_services().BENCH_ENV, **os.environ})  # latency.py reads them
            if e2e_services().up() != 0:
                print("   pulse up failed: see .stack/logs/", file=sys.stderr, flush=True)
        command = [sys.executable, str(script)] + (["--quick"] if args.quick else [])
        print(f"== {label}", file=sys.stderr, flush=True)
        started = time.monotonic()
        try:
            done = subprocess.run(
                command,
                cwd=ROOT,
                env=stack_environment(),
                capture_output=True,
                text=True,
                timeout=args.timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            rows.append((label, {"name": "timed out", "pass": False}))
            continue
        sys.stderr.write(done.stderr[-4000:])
        figures = parse_result(done.stdout)
        elapsed = time.monotonic() - started
        if figures is None:
            why = f"exit {done.returncode}, no result line" if done.returncode else "no result line"
            rows.append((label, {"name": f"ERROR ({why})", "pass": False}))
            continue
        print(f"   {len(figures)} figures in {elapsed:.0f} s", file=sys.stderr)
        rows.extend((label, f) for f in figures)
    if started_services:
        print("== stopping the services started for bench/e2e/", file=sys.stderr, flush=True)
        e2e_services().down()

    headers = ("benchmark", "figure", "value", "baseline", "ratio", "target", "pass")
    table = [headers] + [
        (
            label,
            str(f.get("name", "?")),
            f"{fmt(f.get('value'))} {f.get('unit', '')}".strip(),
            fmt(f.get("baseline")),
            fmt(f.get("ratio")),
            fmt(f.get("target")),
            {True: "PASS", False: "FAIL", None: "—"}.get(f.get("pass"), "?"),
        )
        for label, f in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    for n, row in enumerate(table):
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)))
        if n == 0:
            print("  ".join("-" * w for w in widths))
    failed = sum(1 for _, f in rows if f.get("pass") is False)
    print(f"\n{len(rows)} figures, {failed} not meeting target")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
