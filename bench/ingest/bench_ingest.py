"""Ingest benchmark: wrk (a separate process) against the live app, directly and via nginx.

Figures, each with its target and a baseline measured in the same run:
  1. single review POST, nginx vs direct (ratio >= 0.9), req/s via nginx (>= 2,500);
  2. p99 at a constant ~1,500 req/s through nginx (<= 30 ms), wrk with a per-connection
     `delay()` (closed loop, so latency under stalls is under-reported: coordinated omission);
  3. batch ingest rows/s through nginx (>= 50,000), beside a raw asyncpg COPY of the same rows.

Needs the stack (`make stack-up`) and `wrk` (Debian: apt-get install -y wrk). Starts
`python -m ingest` on 127.0.0.1:58001 if nothing healthy answers there. Not a test: run it
by hand, e.g. `uv run python bench/ingest/bench_ingest.py --duration 10`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx

REPO = Path(__file__).resolve().parents[2]
DIRECT = "http://127.0.0.1:58001"

LUA = r"""
local counter = 0
local prefix = ""
local next_tid = 0
function setup(thread)
  next_tid = next_tid + 1
  thread:set("tid", next_tid)
end
function init(args)
  math.randomseed(os.time() + (tid or 0) * 7919)
  prefix = string.format("bench-%d-%d-%d-", tid or 0, os.time(), math.random(1, 1073741823))
end
request = function()
  counter = counter + 1
  return wrk.format("POST", "__PATH__", {
    ["Content-Type"] = "application/json",
    ["X-API-Key"] = "__KEY__",
    ["Idempotency-Key"] = prefix .. counter,
  }, __BODY__)
end
__DELAY__
done = function(summary, latency, requests)
  local ok = summary.requests - summary.errors.status - summary.errors.connect
      - summary.errors.read - summary.errors.write - summary.errors.timeout
  io.write(string.format(
    'WRKJSON {"requests": %d, "ok": %d, "status_errors": %d, "socket_errors": %d, '
    .. '"duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, ok, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
"""


def lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


def wrk(
    base: str,
    path: str,
    body: str,
    key: str,
    *,
    threads: int,
    connections: int,
    duration_s: int,
    delay_ms: float | None = None,
) -> dict[str, float]:
    script = (
        LUA.replace("__PATH__", path)
        .replace("__KEY__", key)
        .replace("__BODY__", lua_string(body))
        .replace("__DELAY__", f"function delay() return {delay_ms} end" if delay_ms else "")
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        out = subprocess.run(
            ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration_s}s",
             "--timeout", "10s", "-s", f.name, base],
            capture_output=True, text=True, timeout=duration_s + 60, check=True,
        ).stdout  # fmt: skip
    finally:
        os.unlink(f.name)
    line = next(ln for ln in out.splitlines() if ln.startswith("WRKJSON "))
    result: dict[str, float] = json.loads(line.removeprefix("WRKJSON "))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["ok_rps"] = result["ok"] / (result["duration_us"] / 1e6)
    return result


def env_from_stack() -> dict[str, str]:
    values = dict(os.environ)
    path = REPO / ".stack" / "env"
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, _, v = line.partition("=")
            values.setdefault(k.strip(), v.strip())
    return values


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def ensure_app(env: dict[str, str]) -> subprocess.Popen[bytes] | None:
    subprocess.run([sys.executable, "-m", "ingest", "migrate"], env=env, check=True,
                   capture_output=True, timeout=120)  # fmt: skip
    if healthy(DIRECT):
        return None
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest"], env={**env, "INGEST_LOG_LEVEL": "WARNING"}
    )
    deadline = time.monotonic() + 30
    while not healthy(DIRECT):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit("ingest did not start on 58001")
        time.sleep(0.2)
    return proc


def ticks_body(n: int) -> tuple[str, list[tuple[object, ...]]]:
    now = datetime.now(UTC)
    ticks = [
        {"symbol": f"BENCH{i % 50}", "asset_class": "crypto", "price": f"{60000 + i % 1000}.25",
         "size": "0.125", "event_time": now.isoformat(), "venue": "bench"}
        for i in range(n)
    ]  # fmt: skip
    records = [
        (t["symbol"], "crypto", Decimal(t["price"]), Decimal("0.125"), now, "bench", now)
        for t in ticks
    ]
    return json.dumps({"ticks": ticks}), records


async def copy_baseline(dsn: str, records: list[tuple[object, ...]], rounds: int) -> float:
    """Rows/s of a bare asyncpg COPY of the same rows (a scratch table Debezium ignores)."""
    conn = await asyncpg.connect(dsn)
    table = f"bench_ticks_{uuid.uuid4().hex[:8]}"
    try:
        await conn.execute(
            f"CREATE TABLE {table} (LIKE market_ticks INCLUDING DEFAULTS INCLUDING IDENTITY)"
        )
        cols = ["symbol", "asset_class", "price", "size", "event_time", "venue", "ingested_at"]
        started = time.perf_counter()
        for _ in range(rounds):
            await conn.copy_records_to_table(table, records=records, columns=cols)
        return len(records) * rounds / (time.perf_counter() - started)
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.close()


def verdict(value: float, target: float, *, higher_is_better: bool = True) -> str:
    ok = value >= target if higher_is_better else value <= target
    return "PASS" if ok else "MISS"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rate", type=int, default=1500, help="constant-rate run, req/s")
    parser.add_argument("--batch", type=int, default=10_000, help="ticks per batch request")
    parser.add_argument("--smoke", action="store_true", help="tiny run: checks the bench works")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    if args.smoke:
        args.duration, args.connections, args.batch = 1, 4, 100

    env = env_from_stack()
    key, nginx = env["PULSE_API_KEY"], env["PULSE_API_URL"].rstrip("/")
    proc = ensure_app(env)
    try:
        sku = f"BENCH-{uuid.uuid4().hex[:8]}"
        r = httpx.post(f"{nginx}/v1/products", json={"sku": sku, "name": "bench"},
                       headers={"X-API-Key": key, "Idempotency-Key": uuid.uuid4().hex}, timeout=10)  # fmt: skip
        r.raise_for_status()
        review = json.dumps({"product_sku": sku, "rating": 4, "title": "Bench",
                             "body": "Works as expected, pours well.", "locale": "en"})  # fmt: skip
        common = {"threads": args.threads, "connections": args.connections,
                  "duration_s": args.duration}  # fmt: skip

        print(f"# ingest benchmark {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (shared machine)")  # fmt: skip
        direct = wrk(DIRECT, "/v1/reviews", review, key, **common)
        via = wrk(nginx, "/v1/reviews", review, key, **common)
        ratio = via["ok_rps"] / direct["ok_rps"] if direct["ok_rps"] else 0.0
        print(f"single review POST direct      {direct['ok_rps']:8.0f} req/s  "
              f"p99 {direct['p99_us'] / 1000:6.1f} ms  (baseline)")  # fmt: skip
        print(f"single review POST via nginx   {via['ok_rps']:8.0f} req/s  "
              f"p99 {via['p99_us'] / 1000:6.1f} ms  target >= 2500  {verdict(via['ok_rps'], 2500)}")  # fmt: skip
        print(f"nginx / direct throughput      {ratio:8.2f}x        target >= 0.90  "
              f"{verdict(ratio, 0.9)}")  # fmt: skip

        conns = max(4, min(args.connections, 32))
        delay_ms = max(1.0, conns * 1000 / args.rate - 1.0)  # minus ~1 ms of service time
        steady = wrk(nginx, "/v1/reviews", review, key, threads=args.threads,
                     connections=conns, duration_s=args.duration, delay_ms=delay_ms)  # fmt: skip
        p99_ms = steady["p99_us"] / 1000
        print(f"constant rate via nginx        {steady['ok_rps']:8.0f} req/s  "
              f"p50 {steady['p50_us'] / 1000:.1f} ms  p99 {p99_ms:.1f} ms  "
              f"target p99 <= 30 ms at {args.rate}/s  "
              f"{verdict(p99_ms, 30, higher_is_better=False)}")  # fmt: skip

        body, records = ticks_body(args.batch)
        batch = wrk(nginx, "/v1/ticks/batch", body, key, threads=min(2, args.threads),
                    connections=2, duration_s=max(args.duration, 2))  # fmt: skip
        rows_s = batch["ok_rps"] * args.batch
        baseline = asyncio.run(copy_baseline(env["DATABASE_URL"], records, rounds=3))
        print(f"batch ticks via nginx          {rows_s:8.0f} rows/s ({args.batch}/request)  "
              f"target >= 50000  {verdict(rows_s, 50_000)}  "
              f"[bare asyncpg COPY {baseline:.0f} rows/s, ratio {rows_s / baseline:.2f}]")  # fmt: skip
        errors = sum(
            int(x["status_errors"] + x["socket_errors"]) for x in (direct, via, steady, batch)
        )
        print(f"non-2xx or socket errors: {errors}")
        return 0 if errors == 0 else 1
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=15)


if __name__ == "__main__":
    sys.exit(main())
