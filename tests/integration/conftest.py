"""Shared fixtures for tests that run against the real local stack (`make stack-up`)."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pulse_cli.stackenv import read_env_file

REPO = Path(__file__).resolve().parents[2]


def stack_env_path() -> Path:
    stack_dir = os.environ.get("PULSE_STACK_DIR")
    return Path(stack_dir) / "env" if stack_dir else REPO / ".stack" / "env"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def stack_env() -> dict[str, str]:
    """The stack's endpoints and credentials; fails (not skips) when the stack is not up."""
    path = stack_env_path()
    if not path.exists():
        pytest.fail(
            f"{path} not found: the local stack is not up. Run `make stack-up` first.",
            pytrace=False,
        )
    env = read_env_file(path)
    endpoints = {
        "Kafka": env["KAFKA_BOOTSTRAP_SERVERS"].split(",")[0],
        "PostgreSQL": urlsplit(env["DATABASE_URL"]).netloc.rpartition("@")[2],
        "S3Proxy": urlsplit(env["S3_ENDPOINT_URL"]).netloc,
        "Kafka Connect": urlsplit(env["KAFKA_CONNECT_URL"]).netloc,
    }
    down = [f"{name} ({addr})" for name, addr in endpoints.items() if not _reachable(*_split(addr))]
    if down:
        pytest.fail(
            f"the local stack is not fully up: {', '.join(down)} not reachable. "
            "Run `make stack-up` (or `python3 deploy/local/stack.py status`).",
            pytrace=False,
        )
    return env


def _split(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host, int(port)


NewTopicFactory = Callable[[str, int], Awaitable[str]]


@pytest.fixture
async def new_topic(stack_env: dict[str, str]) -> AsyncIterator[NewTopicFactory]:
    """`await new_topic(name, partitions)` creates a topic on the stack's Kafka (which does not
    auto-create them) and returns its name; the topics are deleted after the test."""
    admin = AIOKafkaAdminClient(bootstrap_servers=stack_env["KAFKA_BOOTSTRAP_SERVERS"])
    await admin.start()
    created: list[str] = []

    async def create(name: str, partitions: int) -> str:
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
        created.append(name)
        return name

    try:
        yield create
    finally:
        try:
            if created:
                await admin.delete_topics(created)
        finally:
            await admin.close()
