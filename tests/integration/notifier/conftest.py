"""Fixtures for the notifier's integration tests: topics, local receivers, the process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from notifier.sinks import SmtpSink, WebhookSink
from notifier_harness import SECRET, NotifierProcess, free_port, notifier_env, unique


@pytest.fixture
async def topics(new_topic) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    alerts = await new_topic(unique("test.notifier.alerts"), 3)
    dlq = await new_topic(unique("test.notifier.dlq"), 1)
    return alerts, dlq


@pytest.fixture
async def webhook() -> AsyncIterator[Callable[[], WebhookSink]]:
    sinks: list[WebhookSink] = []

    async def make() -> WebhookSink:
        sink = WebhookSink(port=free_port(), secret=SECRET)
        await sink.start()
        sinks.append(sink)
        return sink

    yield make  # type: ignore[misc]
    for sink in sinks:
        await sink.stop()


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink(port=free_port())
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture
def notifier(stack_env, topics, tmp_path: Path) -> Iterator[Callable[..., NotifierProcess]]:  # type: ignore[no-untyped-def]
    """`notifier(**settings)` starts one (settings without the NOTIFIER_ prefix)."""
    started: list[NotifierProcess] = []
    alerts, dlq = topics

    def start(*, state_dir: Path | None = None, **settings: str) -> NotifierProcess:
        port = free_port()
        state = state_dir or tmp_path / f"state-{len(started)}"
        env = notifier_env(
            stack_env, topic=alerts, dlq_topic=dlq, port=port, state_dir=state, **settings
        )
        proc = NotifierProcess(env, port=port, state_dir=state)
        proc.start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
