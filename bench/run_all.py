"""`make bench`: every benchmark under bench/<service>/ plus bench/e2e/, one table at the end.

Discovery and the output convention are in bench/README.md: per folder, `run.py`, else
`bench.py`, else every `bench_*.py`, plus every `*.py` in bench/e2e/ and the other folders'
end-to-end scripts (NEEDS_SERVICES, run with bench/e2e/); each script's last
stdout line that parses as JSON with a `figures` key is its result. A script that fails or
prints no result becomes an ERROR row; the runner goes on.

The end-to-end scripts need the pipeline services. When ingest does not answer, the runner
starts them just before bench/e2e/ (`bench/e2e/_services.py`: `pulse up` on bench consumer
groups fast-forwarded to the log end, so another benchmark's backlog is not measured as
latency) and stops them right after (`pulse down --services-only`, never the stack), so the
services' own benchmarks still run without them and `make bench` works from a cold checkout.
Services that were already running are used as they are.

The processor the runner starts has empty tables (`_services.py` drops them), which is not
the state it runs with in production. So, when it started them, the runner then restarts the
services with a realistic state pre-loaded (`--e2e-state-claims` dedup claims and a product
catalogue, `bench/e2e/_state.py`) and runs `latency.py` again: both are reported, the second
with `[state: …]` in its figures' names. `--e2e-state-claims 0` leaves that pass out.
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
# End-to-end scripts kept beside their service's benchmark: they need the pipeline services,
# so they run with bench/e2e/ (on the services the runner starts for it).
NEEDS_SERVICES = (BENCH / "dashboard" / "e2e.py",)


def discover(only: set[str] | None = None) -> list[Path]:
    scripts: list[Path] = []
    for folder in sorted(
        p for p in BENCH.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))
    ):
        if only and folder.name not in only:
            continue
        if folder.name == "e2e":
            scripts.extend(sorted(p for p in folder.glob("*.py") if not p.name.startswith("_")))
            scripts.extend(NEEDS_SERVICES)
        elif (folder / "run.py").is_file():
            scripts.append(folder / "run.py")
        elif (folder / "bench.py").is_file():
            scripts.append(folder / "bench.py")
        else:
            scripts.extend(sorted(folder.glob("bench_*.py")))
    if only and "e2e" not in only:  # asked for by their own folder's name
        scripts.extend(p for p in NEEDS_SERVICES if p.parent.name in only)
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


def run_script(
    label: str, command: list[str], *, timeout_s: float
) -> list[tuple[str, dict[str, Any]]]:
    """One benchmark script's rows (an ERROR row when it gave no result)."""
    print(f"== {label}", file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        done = subprocess.run(
            command,
            cwd=ROOT,
            env=stack_environment(),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return [(label, {"name": "timed out", "pass": False})]
    sys.stderr.write(done.stderr[-4000:])
    figures = parse_result(done.stdout)
    elapsed = time.monotonic() - started
    if figures is None:
        why = f"exit {done.returncode}, no result line" if done.returncode else "no result line"
        return [(label, {"name": f"ERROR ({why})", "pass": False})]
    print(f"   {len(figures)} figures in {elapsed:.0f} s", file=sys.stderr)
    return [(label, f) for f in figures]


def latency_on_state(latency: Path, args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    """latency.py again, on services restarted with a realistic processor state."""
    services = e2e_services()
    claims = args.e2e_state_claims
    products = services._state.DEFAULT_PRODUCTS if not args.quick else 100
    state = f"{claims:,} dedup claims, {products:,} products"
    print(f"== restarting the services on a pre-loaded state: {state}", file=sys.stderr, flush=True)
    services.down()
    started = time.monotonic()
    # Pre-load ~30,000 records/s and recovery ~4,000/s here (bench/e2e/_state.py): time for both.
    timeout_s = 900.0 + (claims + 2 * products) / 1_000
    if services.up(timeout_s, state_claims=claims, state_products=products) != 0:
        print("   pulse up failed: see .stack/logs/", file=sys.stderr, flush=True)
    # `pulse up` returns once the processor is healthy, which it is not while it recovers.
    print(f"   pre-loaded and recovered in {time.monotonic() - started:.0f} s", file=sys.stderr)
    command = [sys.executable, str(latency), "--state-label", state]
    command += ["--quick"] if args.quick else []
    return run_script(f"{latency.relative_to(BENCH)} (state)", command, timeout_s=args.timeout_s)


def leave_e2e(scripts: list[Path], args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    """After bench/e2e/ on services the runner started: the pass on a realistic state (when
    asked for), then the services stopped."""
    rows = []
    latency = BENCH / "e2e" / "latency.py"
    if args.e2e_state_claims > 0 and latency in scripts:
        rows = latency_on_state(latency, args)
    print("== stopping the services started for bench/e2e/", file=sys.stderr, flush=True)
    e2e_services().down()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="pass --quick to every script")
    parser.add_argument("--only", nargs="*", help="bench folders to run (default: all)")
    parser.add_argument("--timeout-s", type=float, default=900.0, help="per script")
    parser.add_argument(
        "--no-services", action="store_true", help="never start the services for bench/e2e/"
    )
    parser.add_argument(
        "--e2e-state-claims",
        type=int,
        default=None,
        help="dedup claims pre-loaded for latency.py's second pass (default: bench/e2e/_state.py's"
        " DEFAULT_CLAIMS, 1,000 with --quick; 0: no second pass)",
    )
    args = parser.parse_args()
    if args.e2e_state_claims is None:
        args.e2e_state_claims = 1_000 if args.quick else e2e_services()._state.DEFAULT_CLAIMS
    rows: list[tuple[str, dict[str, Any]]] = []
    started_services = False
    scripts = discover(set(args.only) if args.only else None)
    for script in scripts:
        label = str(script.relative_to(BENCH))
        in_e2e = script.parent.name == "e2e" or script in NEEDS_SERVICES
        if started_services and not in_e2e:
            rows.extend(leave_e2e(scripts, args))
            started_services = False
        if in_e2e and not args.no_services and not started_services and not services_running():
            print("== starting the services for bench/e2e/", file=sys.stderr, flush=True)
            started_services = True
            os.environ.update({**e2e_services().BENCH_ENV, **os.environ})  # latency.py reads them
            if e2e_services().up() != 0:
                print("   pulse up failed: see .stack/logs/", file=sys.stderr, flush=True)
        command = [sys.executable, str(script)] + (["--quick"] if args.quick else [])
        rows.extend(run_script(label, command, timeout_s=args.timeout_s))
    if started_services:
        rows.extend(leave_e2e(scripts, args))

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
