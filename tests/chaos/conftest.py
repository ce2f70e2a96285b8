"""The fault suite's pipeline (one per session) and its results table.

`make chaos` runs this tier (PULSE_CHAOS=1; the default `pytest` run leaves tests/chaos out,
see tests/conftest.py). It needs the stack up and migrated; it starts its own services.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from chaos_harness import FaultResult, Pipeline, load_stack_env, stack_env_file, table

RESULTS: list[FaultResult] = []


@pytest.fixture(scope="session")
def results() -> list[FaultResult]:
    return RESULTS


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """ingest, one cdc_processor worker and one archiver on run-unique groups; a probe review
    has gone through before any fault starts."""
    env = load_stack_env()
    root = Path(os.environ.get("PULSE_CHAOS_DIR") or tmp_path_factory.mktemp("chaos"))
    p = Pipeline(root, env)
    try:
        ingest = p.ingest_spec()
        if p.supervisor.run_once(ingest, "migrate") != 0:
            pytest.fail(f"migrations failed: {p.tail('ingest')}", pytrace=False)
        p.fast_forward_archiver()
        p.start(ingest, wait=False)
        p.start(p.cdc_spec(1), wait=False)
        p.start(p.archiver_spec(1), wait=False)
        for spec in (ingest, p.archiver_spec(1)):
            p.wait_healthy(spec)
        _first_worker(p)
        _probe(p)
        yield p
    finally:
        p.stop_all()
        p.drop_tables()


def _first_worker(p: Pipeline) -> None:
    """A new app id's first worker creates its table topics, and its first assignment can
    miss the ones created a moment before ("Ignoring missing topic"); seen to wait >100 s
    on a loaded machine. A second start finds them all."""
    spec = p.cdc_spec(1)
    try:
        p.wait_healthy(spec, timeout_s=45)
    except RuntimeError:
        p.stop(spec.name)
        p.start(spec)


def _probe(p: Pipeline) -> None:
    """A review must come out enriched before the faults: the worker is assigned and reading
    (it starts at the end of its inputs, so earlier writes would be missed)."""
    from chaos_harness import ENRICHED

    sku = f"CHAOS-{p.run}-probe"
    p.create_product(sku)
    headers = {"X-API-Key": p.env["PULSE_API_KEY"]}
    deadline = time.monotonic() + 120
    n = 0
    import asyncio

    from chaos_harness import Watcher

    async def wait_enriched() -> None:
        nonlocal n
        watcher = Watcher(p.env["KAFKA_BOOTSTRAP_SERVERS"], sku)
        ready, stop = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(watcher.run(ready, stop))
        await ready.wait()
        try:
            async with httpx.AsyncClient(base_url=p.ingest_url, headers=headers) as client:
                while not watcher.first_seen:
                    if time.monotonic() > deadline:
                        pytest.fail(f"no probe review on {ENRICHED.name} in 120 s", pytrace=False)
                    n += 1
                    await client.post(
                        "/v1/reviews",
                        json={"product_sku": sku, "rating": 5, "body": f"probe {n}"},
                        headers={"Idempotency-Key": f"{sku}-{n}"},
                    )
                    await asyncio.sleep(2)
        finally:
            stop.set()
            await task

    asyncio.run(wait_enriched())


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RESULTS:
        return
    terminalreporter.section("fault suite (make chaos)")
    terminalreporter.write_line(table(RESULTS))
    out = Path(
        os.environ.get("PULSE_CHAOS_RESULTS") or stack_env_file().parent / "chaos-results.json"
    )
    out.write_text(json.dumps([r.__dict__ for r in RESULTS], indent=1) + "\n", encoding="utf-8")
    terminalreporter.write_line(f"figures: {out}")
