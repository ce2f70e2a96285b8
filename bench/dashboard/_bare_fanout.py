"""The bare fan-out baseline: a minimal asyncio server that tails the same Kafka topic and
writes the same kind of frames to every connected client, with the same coalescing interval
(latest record per key, one write per client per interval) but no state, no ASGI, no per-client
queue, no auth. `python bench/dashboard/_bare_fanout.py PORT TOPIC INTERVAL_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys

from aiokafka import AIOKafkaConsumer, TopicPartition
from contracts.topics import PARTITIONS  # the benchmark creates its topic with these

HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
    b"cache-control: no-store\r\n\r\n"
)


async def main(port: int, topic: str, interval_s: float) -> None:
    writers: set[asyncio.StreamWriter] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        writer.write(HEAD + b"event: snapshot\nid: 0\ndata: {}\n\n")
        writers.add(writer)
        with contextlib.suppress(ConnectionError):
            await reader.read()  # until the client goes
        writers.discard(writer)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:59092"),
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    pending: dict[bytes | None, bytes] = {}

    async def consume() -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=2000)
            for records in batches.values():
                for record in records:
                    pending[record.key] = record.value

    async def flush() -> None:
        seq = 0
        while True:
            await asyncio.sleep(interval_s)
            if not pending:
                continue
            parts = []
            for value in pending.values():
                seq += 1
                parts.append(b"event: delta\nid: %d\ndata: %s\n\n" % (seq, value))
            pending.clear()
            frames = b"".join(parts)
            for writer in writers:
                if not writer.is_closing():
                    writer.transport.write(frames)

    print("ready", flush=True)
    async with server:
        await asyncio.gather(consume(), flush())


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], float(sys.argv[3])))
