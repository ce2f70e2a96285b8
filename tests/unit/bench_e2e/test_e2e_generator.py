"""The end-to-end bench's generator: raw keep-alive HTTP pool, open-loop schedule, both modes.

Runs against an in-process canned API (no stack): checks that the pool reuses connections,
survives the server closing one, that `offer` sends every review once at the asked rate with
an Idempotency-Key each, and that `analyse` counts lost reviews and splits the latency.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import orjson
import pytest
from pulse_cli.scripts import load_script

E2E = Path(__file__).resolve().parents[3] / "bench" / "e2e"


def load(name: str) -> ModuleType:
    sys.path.insert(0, str(E2E))
    sys.path.insert(0, str(E2E.parents[1] / "cli" / "src"))
    return load_script(E2E / f"{name}.py", name)


class CannedApi:
    """Answers /v1/reviews with one id and /v1/reviews/batch with one id per review."""

    def __init__(self, close_every: int = 0) -> None:
        self.close_every = close_every
        self.requests: list[tuple[str, str, bytes]] = []  # (path, idempotency key, body)
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = 0
        try:
            while line := await reader.readline():
                path = line.split()[1].decode()
                headers: dict[str, str] = {}
                while (h := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = h.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.requests.append((path, headers.get("idempotency-key", ""), body))
                if path.endswith("/batch"):
                    n = len(orjson.loads(body)["reviews"])
                    payload = orjson.dumps(
                        {"inserted": n, "ids": [str(uuid.uuid4()) for _ in range(n)]}
                    )
                else:
                    payload = orjson.dumps({"id": str(uuid.uuid4())})
                served += 1
                close = bool(self.close_every) and served % self.close_every == 0
                writer.write(
                    b"HTTP/1.1 201 Created\r\nContent-Length: %d\r\n%s\r\n%s"
                    % (len(payload), b"Connection: close\r\n" if close else b"", payload)
                )
                await writer.drain()
                if close:
                    break
        finally:
            writer.close()


@pytest.fixture
async def api() -> AsyncIterator[tuple[CannedApi, str]]:
    canned = CannedApi(close_every=7)
    server = await asyncio.start_server(canned.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield canned, f"http://127.0.0.1:{port}"


async def test_pool_reuses_connections_and_survives_server_closes(
    api: tuple[CannedApi, str],
) -> None:
    canned, url = api
    pool = load("_load").HttpPool(url, {"X-API-Key": "k"}, connections=4)
    await pool.start()
    answers = await asyncio.gather(*(pool.post("/v1/reviews", b"{}", f"k{i}") for i in range(50)))
    await pool.close()
    assert all(status == 201 and b'"id"' in body for status, body in answers)
    assert sorted(key for _, key, _ in canned.requests) == sorted(f"k{i}" for i in range(50))
    assert canned.connections < 50  # kept alive, replaced only when the server closed one


@pytest.mark.parametrize("mode", ["single", "batch"])
async def test_offer_sends_every_review_once_at_the_rate(
    api: tuple[CannedApi, str], mode: str
) -> None:
    canned, url = api
    latency = load("latency")
    pool = latency.HttpPool(url, {"X-API-Key": "k"}, connections=8)
    await pool.start()
    o = await latency.offer(
        pool, mode=mode, rate=400.0, duration_s=0.5, warmup_s=0.1, batch_size=10,
        sku="S", run_id="r",
    )  # fmt: skip
    await pool.close()
    assert len(o.due) == 240 and not o.errors
    assert o.achieved == pytest.approx(400, rel=0.15)
    keys = [key for _, key, _ in canned.requests]
    assert len(keys) == len(set(keys)) == (24 if mode == "batch" else 240)
    paths = {path for path, _, _ in canned.requests}
    assert paths == ({"/v1/reviews/batch"} if mode == "batch" else {"/v1/reviews"})
    dues = sorted(o.due.values())
    assert dues[-1] - dues[0] == pytest.approx(239 / 400, abs=1e-6)  # one review every 1/rate


def test_analyse_counts_lost_reviews_and_splits_stages() -> None:
    latency = load("latency")
    o = latency.Offer()
    o.counted_from, o.achieved = 0.0, 1000.0
    for n in range(10):
        o.due[f"r{n}"], o.acked[f"r{n}"] = 1.0 + n, 1.010 + n
    wall = 100.0  # wall clock minus monotonic
    seen = {
        "enriched": {f"r{n}": 1.050 + n for n in range(9)},  # r9 never arrives
        "cdc": {
            f"r{n}": (1.030 + n, int((wall + 1.005 + n) * 1000), int((wall + 1.020 + n) * 1000))
            for n in range(9)
        },
        "cpu_s": 0.1,
    }
    figures, summary = latency.analyse("single", o, seen, 1000.0, wall)
    assert summary["lost"] == 1 and summary["target_met"] is False
    stages = summary["stages_ms_p50_p99"]
    assert stages["due_to_enriched"] == (50.0, 50.0)
    assert stages["api_201"] == (10.0, 10.0)
    assert stages["cdc_topic_to_enriched"] == (20.0, 20.0)
    assert stages["pg_commit_to_debezium_read"] == (15.0, 15.0)
    p50 = next(f for f in figures if f["name"].endswith("enriched.v1 p50"))
    assert p50["value"] == 50.0 and p50["pass"] is False  # a lost review fails the target
