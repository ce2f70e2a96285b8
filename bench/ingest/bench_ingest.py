"""Ingest benchmark: wrk (a separate process) against the live app, directly and via nginx.

Figures, each with its target and a baseline measured in the same run:
  1. single review POST, nginx vs direct (ratio >= 0.9), req/s via nginx (>= 2,500), for
     nginx proxying over TCP (the Kubernetes topology, the local stack today) and over
     ingest's unix socket (INGEST_HTTP_UDS, a same-host nginx); the baseline is the same app
     hit directly over TCP with the same wrk settings; each target runs in short slices
     interleaved with the others (6 x 4 s), and its figure is its total over them;
  2. p99 at a constant 1,500 req/s through nginx (<= 30 ms): `constant_rate.py`, an
     open-loop generator in two processes, latency measured from each request's due time;
  3. batch ingest rows/s through nginx (>= 50,000), beside a raw asyncpg COPY of the same rows.

Needs the stack's PostgreSQL (`make stack-up`) and `wrk` (`make bench-tools`: Debian's wrk).
By default it starts its own `python -m ingest` and its own nginx (the real
deploy/nginx/nginx.conf, unchanged) on free ports, so it measures this checkout's code
whatever else runs on 58000/58001; `--shared` measures the stack's nginx and 58001 instead.
Not a test: run it by hand, e.g. `uv run python bench/ingest/bench_ingest.py --duration 10`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx
from pulse_cli import processes
from pulse_cli.scripts import load_script
from pulse_cli.stackenv import read_env_file

REPO = Path(__file__).resolve().parents[2]

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


def _cpu_jiffies() -> list[int]:
    """The machine's CPU jiffies by kind (/proc/stat: user, nice, system, idle, iowait, ...)."""
    with open("/proc/stat") as f:
        return [int(v) for v in f.readline().split()[1:]]


def _busy_jiffies() -> tuple[int, int]:
    values = _cpu_jiffies()
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def settle(*, busy_below: float = 0.35, max_wait_s: float = 30.0) -> float:
    """Waits (bounded) until the machine's CPU is less than `busy_below` busy over a second,
    e.g. Kafka Connect done decoding the previous run's rows; returns the seconds waited.
    Every measured run starts this way, baseline and nginx alike."""
    started = time.monotonic()
    while time.monotonic() - started < max_wait_s:
        busy0, total0 = _busy_jiffies()
        time.sleep(1)
        busy1, total1 = _busy_jiffies()
        if (busy1 - busy0) / max(1, total1 - total0) < busy_below:
            break
    return time.monotonic() - started


def env_from_stack() -> dict[str, str]:
    return {**read_env_file(REPO / ".stack" / "env"), **os.environ}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen[bytes], path: str = "/healthz") -> None:
    try:
        processes.wait_healthy(f"{url}{path}", proc, timeout_s=30)
    except RuntimeError as exc:
        raise SystemExit(f"{url} did not become healthy: {exc}") from None


INGEST_PIDS: dict[str, int] = {}  # url -> pid of each ingest this bench started


@contextlib.contextmanager
def cpu_split(direct_url: str) -> Iterator[dict[str, float]]:
    """CPU seconds used inside the block, per part: ingest (this bench's own instance and its
    workers, or the stack's), PostgreSQL, Kafka, Connect, nginx, other; `generator` for the
    child processes that ended inside it (the load generators); `softirq` and `machine`
    (every busy jiffy) from /proc/stat. Filled in when the block ends."""
    cpu = load_script(REPO / "bench" / "e2e" / "_cpu.py", "pulse_bench_cpu")  # CPU per part
    roots = {INGEST_PIDS[direct_url]: "ingest"} if direct_url in INGEST_PIDS else {}
    out: dict[str, float] = {}
    before, children, stat = cpu.snapshot(roots), os.times(), _cpu_jiffies()
    yield out
    after, children_after, stat_after = cpu.snapshot(roots), os.times(), _cpu_jiffies()
    out.update(cpu.used(before, after))
    out["generator"] = (children_after.children_user + children_after.children_system) - (
        children.children_user + children.children_system
    )
    tick = os.sysconf("SC_CLK_TCK")
    delta = [b - a for a, b in zip(stat, stat_after, strict=True)]
    out["softirq"] = delta[6] / tick
    out["machine"] = (sum(delta) - delta[3] - delta[4]) / tick


@contextlib.contextmanager
def own_ingest(env: dict[str, str], unix_socket: Path | None = None) -> Iterator[str]:
    port = free_port()
    extra = {"INGEST_HTTP_UDS": str(unix_socket)} if unix_socket else {}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest"],
        env={**env, "INGEST_HTTP_PORT": str(port), "INGEST_LOG_LEVEL": "WARNING", **extra},
    )
    url = f"http://127.0.0.1:{port}"
    INGEST_PIDS[url] = proc.pid
    try:
        wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        del INGEST_PIDS[url]


@contextlib.contextmanager
def own_nginx(upstream: str, unix_socket: Path | None = None) -> Iterator[str]:
    """deploy/nginx/nginx.conf as is, on a free port, proxying to `upstream` over TCP, or to
    `unix_socket` with deploy/nginx/env/local/upstream-ingest-uds.conf."""
    stack = load_script(REPO / "deploy" / "local" / "stack.py", "pulse_local_stack")
    prefix = Path(tempfile.mkdtemp(prefix="pulse-bench-nginx-"))
    prefix.chmod(0o755)
    port = free_port()
    conf = stack.render_nginx(
        prefix, listen_port=port, ingest_port=int(upstream.rsplit(":", 1)[1]),
        query_port=free_port(),
    )  # fmt: skip
    if unix_socket is not None:
        stack.render(
            REPO / "deploy" / "nginx" / "env" / "local" / "upstream-ingest-uds.conf",
            conf.parent / "upstream-ingest.conf",
            {"INGEST_SOCKET": str(unix_socket)},
        )
    proc = subprocess.Popen(
        [stack.nginx_bin(), "-p", f"{prefix}/", "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, "/nginx/healthz")
        yield url
    finally:
        proc.send_signal(signal.SIGQUIT)
        proc.wait(timeout=10)
        shutil.rmtree(prefix, ignore_errors=True)


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


async def copy_baseline(
    dsn: str, records: list[tuple[object, ...]], rounds: int
) -> tuple[float, float]:
    """Rows/s of bare asyncpg COPYs of the same rows (a scratch table Debezium ignores):
    binary from Python Decimal/datetime records, and text (PostgreSQL parses the strings,
    as the app now does)."""
    conn = await asyncpg.connect(dsn)
    table = f"bench_ticks_{uuid.uuid4().hex[:8]}"
    text = "".join(
        "\t".join("\\N" if v is None else v.isoformat() if isinstance(v, datetime) else str(v)
                  for v in r) + "\n"
        for r in records
    ).encode()  # fmt: skip
    try:
        await conn.execute(
            f"CREATE TABLE {table} (LIKE market_ticks INCLUDING DEFAULTS INCLUDING IDENTITY)"
        )
        cols = ["symbol", "asset_class", "price", "size", "event_time", "venue", "ingested_at"]
        started = time.perf_counter()
        for _ in range(rounds):
            await conn.copy_records_to_table(table, records=records, columns=cols)
        binary = len(records) * rounds / (time.perf_counter() - started)
        started = time.perf_counter()
        for _ in range(rounds):
            await conn.copy_to_table(table, source=io.BytesIO(text), columns=cols, format="text")
        return binary, len(records) * rounds / (time.perf_counter() - started)
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--duration", type=int, default=10, help="seconds of the constant-rate and batch runs"
    )
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rate", type=int, default=1500, help="constant-rate run, req/s")
    parser.add_argument("--generators", type=int, default=2, help="constant-rate processes")
    parser.add_argument(
        "--rounds", type=int, default=6, help="interleaved direct/nginx slices per target"
    )
    parser.add_argument("--slice", type=int, default=4, help="seconds per interleaved slice")
    parser.add_argument("--batch", type=int, default=10_000, help="ticks per batch request")
    parser.add_argument(
        "--smoke", "--quick", action="store_true", help="tiny run: checks the bench works"
    )
    parser.add_argument(
        "--shared", action="store_true", help="measure the stack's nginx and 58001 instead"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: `make bench-tools` installs it (apt-get install -y wrk)")
    if args.smoke:
        args.duration, args.connections, args.batch, args.rate, args.rounds = 1, 4, 100, 50, 1
        args.slice = 1

    env = env_from_stack()
    key = env["PULSE_API_KEY"]
    subprocess.run([sys.executable, "-m", "ingest", "migrate"], env=env, check=True,
                   capture_output=True, timeout=120)  # fmt: skip
    with contextlib.ExitStack() as stack:
        nginx_uds = None
        if args.shared:
            direct, nginx = "http://127.0.0.1:58001", env["PULSE_API_URL"].rstrip("/")
        else:
            sock_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="pulse-ingest-"))
            Path(sock_dir).chmod(0o755)  # nginx started as root runs its workers as nobody
            sock = Path(sock_dir) / "ingest.sock"
            direct = stack.enter_context(own_ingest(env, unix_socket=sock))
            nginx = stack.enter_context(own_nginx(direct))
            nginx_uds = stack.enter_context(own_nginx(direct, unix_socket=sock))
        return run(args, env, key, direct, nginx, nginx_uds)


def constant_rate(
    url: str, body: str, key: str, *, rate: int, duration_s: int, processes: int
) -> dict[str, float]:
    """Runs constant_rate.py in `processes` processes, each at rate/processes; merges."""
    script = Path(__file__).with_name("constant_rate.py")
    workdir = Path(tempfile.mkdtemp(prefix="pulse-bench-rate-"))
    outs = [workdir / f"rate-{n}.json" for n in range(processes)]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(script),
                "--url",
                url,
                "--body",
                body,
                "--key",
                key,
                "--rate",
                str(rate / processes),
                "--duration",
                str(duration_s),
                "--out",
                str(out),
            ],
        )
        for out in outs
    ]
    for proc in procs:
        proc.wait(timeout=duration_s + 120)
    results = [json.loads(out.read_text()) for out in outs]
    latencies = sorted(x for r in results for x in r["latencies_ms"])
    if not latencies:
        return {"ok_rps": 0.0, "p50_ms": float("inf"), "p99_ms": float("inf"),
                "status_errors": 1.0, "socket_errors": 0.0}  # fmt: skip
    errors = sum(r["errors"] for r in results)
    elapsed = max(r["elapsed_s"] for r in results)
    return {
        "ok_rps": (len(latencies) - errors) / elapsed,
        "p50_ms": latencies[len(latencies) // 2],
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "status_errors": float(errors),
        "socket_errors": 0.0,
    }


FIGURES: list[dict[str, object]] = []  # bench/README.md's result convention


def line(label: str, value: str, target: str = "", ok: bool | None = None) -> None:
    verdict = "" if ok is None else ("PASS" if ok else "MISS")
    print(f"{label:32} {value:38} {target:30} {verdict}")


def figure(name: str, value: float, unit: str, *, baseline: float | None = None,
           target: str | None = None, ok: bool | None = None) -> None:  # fmt: skip
    ratio = round(value / baseline, 3) if baseline else None
    FIGURES.append({"name": name, "value": round(value, 1), "unit": unit, "baseline": baseline,
                    "ratio": ratio, "target": target, "pass": ok})  # fmt: skip


def run(
    args: argparse.Namespace,
    env: dict[str, str],
    key: str,
    direct_url: str,
    nginx: str,
    nginx_uds: str | None,
) -> int:
    """`nginx` proxies over TCP (the Kubernetes topology, and the local stack's); `nginx_uds`,
    if given, is the same nginx.conf proxying over ingest's unix socket (same host)."""
    sku = f"BENCH-{uuid.uuid4().hex[:8]}"
    headers = {"X-API-Key": key, "Idempotency-Key": uuid.uuid4().hex}
    product = {"sku": sku, "name": "bench"}
    httpx.post(f"{nginx}/v1/products", json=product, headers=headers, timeout=10)
    review = json.dumps(
        {"product_sku": sku, "rating": 4, "title": "Bench", "locale": "en",
         "body": "Works as expected, pours well."}
    )  # fmt: skip
    common = {"threads": args.threads, "connections": args.connections}
    duration = args.duration
    where = "shared" if args.shared else "own"
    print(
        f"# ingest benchmark {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (shared machine)\n"
        f"# direct {direct_url}, nginx {nginx} (TCP upstream), {nginx_uds or '-'} (unix socket) "
        f"({where} instances); wrk {args.threads} "
        f"threads, {args.connections} connections; {args.rounds} interleaved {args.slice} s "
        f"slices per target, {duration} s for the constant-rate and batch runs"
    )

    # Direct and nginx run in short slices, interleaved (order reversed every other round, so
    # no target always runs right after another one's writes while Debezium still decodes
    # them), and each target's throughput is its total over all its slices. This VM's speed
    # drifts by minutes (a fixed Python loop took 0.9 s to 3.1 s within one hour on
    # 2026-11-23): slices taken side by side see the same drift, whereas one long run per
    # target compared moments minutes apart. The median of each round's paired ratios is
    # printed beside it. Each target is warmed up for a second first (not counted). The
    # baseline is the same app, same wrk settings, hit directly over TCP.
    targets = {"direct": direct_url, "tcp": nginx}
    if nginx_uds:
        targets["uds"] = nginx_uds
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
    for url in targets.values():
        wrk(url, "/v1/reviews", review, key, duration_s=1, **common)
    waits = []
    for n in range(args.rounds):
        for name, url in list(targets.items())[:: 1 if n % 2 == 0 else -1]:
            waits.append(settle())
            busy0, _ = _busy_jiffies()
            result = wrk(url, "/v1/reviews", review, key, duration_s=args.slice, **common)
            busy1, _ = _busy_jiffies()
            # The whole machine's CPU per OK request (app, PostgreSQL, Kafka Connect, wrk,
            # nginx, kernel, and whatever else ran): steadier than req/s on a shared box.
            cpu_s = (busy1 - busy0) / os.sysconf("SC_CLK_TCK")
            result["cpu_us"] = cpu_s * 1e6 / max(1, result["ok"])
            runs[name].append(result)
    total = {
        name: {
            "ok_rps": sum(r["ok"] for r in rs) / (sum(r["duration_us"] for r in rs) / 1e6),
            "p99_us": statistics.median(r["p99_us"] for r in rs),  # "slice p99": the median
        }
        for name, rs in runs.items()
    }
    print(f"# waited {min(waits):.0f}-{max(waits):.0f} s before each slice for the CPU to settle")
    print("# every slice, machine CPU us per request: " + "; ".join(
        f"{name} " + " / ".join(f"{r['cpu_us']:.0f}" for r in rs) for name, rs in runs.items()
    ))  # fmt: skip
    print("# every slice, req/s: " + "; ".join(
        f"{name} " + " / ".join(f"{r['ok_rps']:.0f}" for r in rs) for name, rs in runs.items()
    ))  # fmt: skip
    direct = total["direct"]
    line(f"single review POST, direct, {args.rounds}x{args.slice} s",
         f"{direct['ok_rps']:.0f} req/s, slice p99 {direct['p99_us'] / 1000:.1f} ms",
         "(baseline)")  # fmt: skip
    labels = {"tcp": "TCP upstream", "uds": "unix-socket upstream"}
    for name in [t for t in targets if t != "direct"]:
        via = total[name]
        ratio = via["ok_rps"] / direct["ok_rps"] if direct["ok_rps"] else 0.0
        paired = statistics.median(
            v["ok_rps"] / d["ok_rps"] for v, d in zip(runs[name], runs["direct"], strict=True)
            if d["ok_rps"]
        ) if runs["direct"] else 0.0  # fmt: skip
        line(f"via nginx, {labels[name]}", f"{via['ok_rps']:.0f} req/s, "
             f"slice p99 {via['p99_us'] / 1000:.1f} ms", "target >= 2500 req/s",
             via["ok_rps"] >= 2500)  # fmt: skip
        line(f"nginx ({name}) / direct", f"{ratio:.2f}x (paired median {paired:.2f}x)",
             "target >= 0.90x", ratio >= 0.9)  # fmt: skip
        figure(f"ingest POST /v1/reviews via nginx ({labels[name]})", via["ok_rps"], "req/s",
               baseline=round(direct["ok_rps"], 1), target=">= 2500 req/s and >= 0.9x direct",
               ok=via["ok_rps"] >= 2500 and ratio >= 0.9)  # fmt: skip

    print(f"# waited {settle():.0f} s for the CPU to settle")
    with cpu_split(direct_url) as used:
        steady = constant_rate(nginx, review, key, rate=args.rate, duration_s=duration,
                               processes=args.generators)  # fmt: skip
    answered = max(1.0, steady["ok_rps"] * duration)
    print("# constant-rate run, CPU us per request: " + ", ".join(
        f"{part} {seconds * 1e6 / answered:.0f}" for part, seconds in used.items()
    ))  # fmt: skip
    p99_ms = steady["p99_ms"]
    line(f"constant {args.rate}/s, via nginx", f"{steady['ok_rps']:.0f} req/s, p50 "
         f"{steady['p50_ms']:.1f} ms, p99 {p99_ms:.1f} ms", "target p99 <= 30 ms",
         p99_ms <= 30)  # fmt: skip
    figure(f"ingest POST /v1/reviews p99 at {args.rate}/s via nginx", p99_ms, "ms",
           target="p99 <= 30 ms", ok=p99_ms <= 30)  # fmt: skip

    body, records = ticks_body(args.batch)
    print(f"# waited {settle():.0f} s for the CPU to settle")
    batch = wrk(nginx, "/v1/ticks/batch", body, key, threads=min(2, args.threads),
                connections=4, duration_s=max(duration, 2))  # fmt: skip
    rows_s = batch["ok_rps"] * args.batch
    baseline, text_baseline = asyncio.run(copy_baseline(env["DATABASE_URL"], records, rounds=3))
    line(f"batch ticks ({args.batch}/req), nginx", f"{rows_s:.0f} rows/s",
         "target >= 50000 rows/s", rows_s >= 50_000)  # fmt: skip
    line("bare asyncpg COPY, same rows", f"{baseline:.0f} rows/s",
         f"(baseline; ingest {rows_s / baseline:.2f}x)")  # fmt: skip
    line("bare text COPY, same rows", f"{text_baseline:.0f} rows/s",
         f"(ingest {rows_s / text_baseline:.2f}x)")  # fmt: skip
    figure(f"ingest POST /v1/ticks/batch ({args.batch}/req) via nginx", rows_s, "rows/s",
           baseline=round(baseline, 1), target=">= 50000 rows/s", ok=rows_s >= 50_000)  # fmt: skip
    every = (*(r for rs in runs.values() for r in rs), steady, batch)
    errors = sum(int(x["status_errors"] + x["socket_errors"]) for x in every)
    print(f"non-2xx or socket errors: {errors}")
    print(json.dumps({"figures": FIGURES}))
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
