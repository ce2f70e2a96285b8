"""Open-loop constant-rate load generator (one process of several): request i is due at
start + i/rate whether or not earlier ones have answered, and its latency is measured from
that due time, so a stall shows up in the percentiles (no coordinated omission).

Raw HTTP/1.1 over a pool of keep-alive connections; prints one JSON line with latencies.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import time
from urllib.parse import urlsplit


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> int:
    writer.write(request)
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def run(url: str, path: str, body: bytes, key: str, rate: float, duration_s: float,
              connections: int) -> dict[str, object]:  # fmt: skip
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection(host, port))
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"X-API-Key: {key}\r\nContent-Length: {len(body)}\r\nIdempotency-Key: "
    ).encode()
    prefix = f"cr-{os.getpid()}-{time.time_ns()}-".encode()
    latencies: list[float] = []
    errors = 0

    async def one(i: int, due: float) -> None:
        nonlocal errors
        reader, writer = await pool.get()
        try:
            status = await _exchange(reader, writer, head + prefix + b"%d\r\n\r\n" % i + body)
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
            errors += 1
            writer.close()
            pool.put_nowait(await asyncio.open_connection(host, port))
            return
        latencies.append((time.monotonic() - due) * 1000)
        if not 200 <= status < 300:
            errors += 1
        pool.put_nowait((reader, writer))

    total = int(rate * duration_s)
    start = time.monotonic() + 0.1
    tasks = []
    for i in range(total):
        due = start + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - start
    return {"latencies_ms": latencies, "errors": errors, "sent": total, "elapsed_s": elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--path", default="/v1/reviews")
    parser.add_argument("--body", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--rate", type=float, required=True, help="requests/s of this process")
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--out", required=True, help="file to write the JSON result to")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(
        run(args.url, args.path, args.body.encode(), args.key, args.rate, args.duration,
            args.connections)
    )  # fmt: skip
    # A file, not stdout: anything else writing to stdout would corrupt the long JSON line.
    pathlib.Path(args.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
