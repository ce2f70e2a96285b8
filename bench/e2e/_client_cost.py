"""Where an open-loop load generator loses time: client CPU per request, by HTTP client.

Not part of `make bench` (the leading underscore keeps run_all.py from running it). It starts
a canned HTTP/1.1 server in a child process (answers every request `201 {"id": ...}` at once,
so the server is never the limit) and drives it open loop at a constant rate with each
client, printing the achieved rate, the generator's CPU per request and its latency.

    flock /tmp/pulse-bench.lock uv run python bench/e2e/_client_cost.py --rate 1000
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import socket
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _load import HttpPool, percentile

BODY = b'{"product_sku":"X","rating":4,"title":"t","body":"Works well, review 1.","locale":"en"}'


def _serve(port: int) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    class Canned(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.buf = b""

        def data_received(self, data: bytes) -> None:
            self.buf += data
            while True:
                head_end = self.buf.find(b"\r\n\r\n")
                if head_end < 0:
                    return
                head = self.buf[:head_end].lower()
                at = head.find(b"content-length:")
                length = int(head[at + 15 :].split(b"\r\n", 1)[0]) if at >= 0 else 0
                if len(self.buf) < head_end + 4 + length:
                    return
                self.buf = self.buf[head_end + 4 + length :]
                body = b'{"id":"%s"}' % str(uuid.uuid4()).encode()
                self.transport.write(  # type: ignore[attr-defined]
                    b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Canned, "127.0.0.1", port)
        await server.serve_forever()

    asyncio.run(main())


async def open_loop(
    send: Callable[[int], Awaitable[None]], rate: float, duration_s: float
) -> tuple[float, list[float], float]:
    latencies: list[float] = []
    total = int(rate * duration_s)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()

    async def one(n: int, due: float) -> None:
        await send(n)
        latencies.append((time.monotonic() - due) * 1000)

    tasks = []
    n = 0
    while n < total:
        now = time.monotonic()
        while n < total and t0 + n / rate <= now:  # launch everything due (catch up)
            tasks.append(asyncio.create_task(one(n, t0 + n / rate)))
            n += 1
        await asyncio.sleep(max(0.0, t0 + n / rate - time.monotonic()))
        if time.monotonic() > t0 + duration_s * 3 + 5:
            break  # the client cannot keep up at all: stop offering
    # bounded: a client that falls behind (httpx's pool) must not hold the bench lock for long
    give_up = max(0.0, t0 + duration_s * 3 + 10 - time.monotonic())
    _, pending = await asyncio.wait(tasks, timeout=give_up)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    elapsed = time.monotonic() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    done = max(1, len(latencies))
    if pending or n < total:
        print(f"   gave up: {len(latencies)} of {total} answered in {elapsed:.1f} s", flush=True)
    return done / elapsed, latencies, cpu / done * 1e6


async def bench(port: int, rate: float, duration_s: float, clients: list[str]) -> None:
    url = f"http://127.0.0.1:{port}"
    for name in clients:
        if name == "httpx":
            import httpx

            limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
            async with httpx.AsyncClient(base_url=url, limits=limits) as hc:

                async def send_httpx(n: int) -> None:
                    r = await hc.post(
                        "/v1/reviews", headers={"Idempotency-Key": f"k{n}"}, content=BODY
                    )
                    r.json()

                result = await open_loop(send_httpx, rate, duration_s)
        elif name == "aiohttp":
            import aiohttp

            conn = aiohttp.TCPConnector(limit=256)
            async with aiohttp.ClientSession(url, connector=conn) as session:

                async def send_aiohttp(n: int) -> None:
                    async with session.post(
                        "/v1/reviews", headers={"Idempotency-Key": f"k{n}"}, data=BODY
                    ) as r:
                        await r.read()

                result = await open_loop(send_aiohttp, rate, duration_s)
        else:
            pool = HttpPool(url, {"X-API-Key": "x"}, connections=64)
            await pool.start()

            async def send_raw(n: int, pool: HttpPool = pool) -> None:
                await pool.post("/v1/reviews", BODY, f"k{n}")

            result = await open_loop(send_raw, rate, duration_s)
            await pool.close()
        achieved, lat, cpu_us = result
        print(
            f"{name:8s} asked {rate:.0f}/s achieved {achieved:7.0f}/s  client CPU "
            f"{cpu_us:6.0f} us/request ({cpu_us * rate / 1e4:5.1f}% of a core at the asked rate)"
            f"  latency p50 {percentile(lat, 50):6.1f} ms p99 {percentile(lat, 99):7.1f} ms",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--duration-s", type=float, default=5.0)
    parser.add_argument("--clients", nargs="*", default=["httpx", "aiohttp", "raw"])
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = multiprocessing.Process(target=_serve, args=(port,), daemon=True)
    server.start()
    time.sleep(0.5)
    try:
        if args.uvloop:
            import uvloop

            uvloop.install()
        asyncio.run(bench(port, args.rate, args.duration_s, args.clients))
    finally:
        server.terminate()
        server.join(5)


if __name__ == "__main__":
    main()
