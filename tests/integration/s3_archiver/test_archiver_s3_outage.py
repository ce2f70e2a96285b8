"""S3 outage: the archiver's S3 endpoint goes away for longer than a window while events keep
coming. Nothing is written or committed meanwhile, fetching pauses so memory stays bounded,
and once S3 is back every event arrives.

The outage is made by a TCP forwarder between the archiver and the stack's S3Proxy (killed,
then restarted on the same port): the shared S3Proxy keeps serving the other engineers' tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from archiver_harness import HERE, ArchiverProcess, Scenario, dedup, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]

WINDOW_S = 2.0
OUTAGE_S = 8.0  # > window + grace
MAX_BUFFERED = 4 * 1024 * 1024
POLL_MAX_RECORDS = 500


class Forwarder:
    def __init__(self, target: str) -> None:
        url = urlsplit(target)
        self.host, self.target_port = url.hostname or "127.0.0.1", url.port or 80
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "tcp_forwarder.py"),
                str(self.port),
                self.host,
                str(self.target_port),
            ],
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == b"ready"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


async def test_outage_pauses_commits_nothing_and_drains_after(
    stack_env: dict[str, str], archivers: list[ArchiverProcess], log_dir: Path
) -> None:
    sc = Scenario(stack_env, "outage")
    await sc.create_topics()
    forwarder = Forwarder(stack_env["S3_ENDPOINT_URL"])
    forwarder.start()
    try:
        env = dict(stack_env, S3_ENDPOINT_URL=f"http://127.0.0.1:{forwarder.port}")
        sc.env = env
        proc = ArchiverProcess(
            sc,
            log_dir,
            window_s=WINDOW_S,
            idle_grace_s=0.5,
            max_buffered_bytes=MAX_BUFFERED,
            poll_max_records=POLL_MAX_RECORDS,
            s3_attempts=2,
            s3_backoff_base_s=0.1,
            s3_backoff_max_s=1.0,
            s3_timeout_s=2,
        ).start()
        archivers.append(proc)
        produced = 0
        producing = True

        async def keep_producing() -> None:
            nonlocal produced
            while producing:
                await sc.produce_candles(range(produced, produced + 60))
                produced += 60
                await asyncio.sleep(0.2)  # ~300 events/s

        producer = asyncio.create_task(keep_producing())
        try:
            await sc.wait_for_rows(1, timeout_s=60)  # S3 up: objects land

            forwarder.stop()  # S3 goes away
            await asyncio.sleep(1.5)  # an upload in flight at the cut may still finish
            committed_at_cut = await sc.committed()
            listing_at_cut = await sc.listing()
            buffered: list[float] = []
            outage_end = time.monotonic() + OUTAGE_S
            while time.monotonic() < outage_end:
                buffered.append(proc.metric("pulse_archive_buffered_bytes"))
                assert await sc.committed() == committed_at_cut, "committed during the outage"
                await asyncio.sleep(0.5)
            assert await sc.listing() == listing_at_cut  # nothing written (read past the cut)
            assert proc.metric("pulse_s3_errors_total") > 0
            assert "pausing fetch" in proc.log()
            assert max(buffered) <= MAX_BUFFERED + POLL_MAX_RECORDS * 4 * 1024

            forwarder.start()  # S3 is back
            await asyncio.sleep(2)
        finally:
            producing = False
            await producer
        rows = await sc.wait_for_rows(produced, timeout_s=60)
        assert len(dedup(rows)) == produced
        assert sorted(r["trade_count"] for r in dedup(rows).values()) == list(range(produced))
        assert proc.peak_rss_mb() <= 512, f"peak RSS {proc.peak_rss_mb():.0f} MB"
        assert proc.terminate(30) == 0
        assert await sc.committed() == await sc.end_offsets()
    finally:
        with contextlib.suppress(Exception):
            forwarder.stop()
