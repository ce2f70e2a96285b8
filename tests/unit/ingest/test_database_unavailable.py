"""What the ingest log says when PostgreSQL cannot be reached: which step failed (acquiring
a connection or running the statement), after how long, and which setting set the limit.
Against sockets that refuse or never answer; the real database's stop/restart is covered by
tests/integration/ingest."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator

import pytest
from ingest.repository import Database, DatabaseConfig, DatabaseUnavailableError


def config(port: int, *, acquire_timeout_s: float = 0.2) -> DatabaseConfig:
    return DatabaseConfig(
        dsn=f"postgresql://pulse@127.0.0.1:{port}/pulse", min_size=0, max_size=2,
        acquire_timeout_s=acquire_timeout_s, statement_timeout_s=0.3, connect_timeout_s=1.0,
    )  # fmt: skip


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A TCP server that accepts and never answers, like a PostgreSQL stuck mid start-up."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_silent_server_is_an_acquire_timeout_naming_its_setting(
    silent_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    db = Database(config(silent_port))
    await db.start()
    try:
        with (
            caplog.at_level(logging.WARNING, "ingest.repository"),
            pytest.raises(DatabaseUnavailableError) as raised,
        ):
            await db.ping()
    finally:
        await db.close()
    reason = str(raised.value)
    assert reason.startswith("TimeoutError while acquiring a connection after 0.")
    assert "INGEST_DB_ACQUIRE_TIMEOUT_S=0.2" in reason
    elapsed = float(reason.split(" after ")[1].split(" s")[0])
    assert 0.15 <= elapsed < 0.9
    assert f"database unavailable: {reason}" in caplog.messages


async def test_a_refused_connection_says_so_without_a_timeout_hint() -> None:
    db = Database(config(closed_port()))
    await db.start()
    try:
        with pytest.raises(DatabaseUnavailableError) as raised:
            await db.ping()
    finally:
        await db.close()
    reason = str(raised.value)
    assert " while acquiring a connection after " in reason
    assert "INGEST_DB_" not in reason
    assert "Connect call failed" in reason or "refused" in reason.lower()
