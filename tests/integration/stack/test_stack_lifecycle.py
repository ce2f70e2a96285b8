"""stack.py's process lifecycle, on a private mini stack (PostgreSQL + S3Proxy, own state dir
and ports) so the shared stack is untouched: up is idempotent, down leaves no process behind,
rows and objects persist across down/up and `restart s3proxy`, `up` reloads an edited
pulse.conf into a running server, and a taken port is a clear error."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pulse_cli.stackenv import read_env_file

pytestmark = pytest.mark.integration

RunStack = Callable[..., subprocess.CompletedProcess[str]]
OpenS3 = Callable[[dict[str, str]], AbstractAsyncContextManager[Any]]
REPO = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd:
            found.append(f"{proc.name}: {cmd}")
    return found


@pytest.fixture
def mini_env(stack_env: dict[str, str]) -> Iterator[dict[str, str]]:
    # short path (unix socket length) that the `postgres` user can traverse
    state = Path(tempfile.mkdtemp(prefix="pulse-mini-", dir="/tmp"))
    state.chmod(0o755)
    env = {
        "PULSE_STACK_DIR": str(state),
        # reuse the shared stack's resolved jars: no Maven run in tests
        "PULSE_STACK_CACHE_DIR": stack_env["PULSE_STACK_DIR"],
        "PULSE_PG_PORT": str(_free_port()),
        "PULSE_S3_PORT": str(_free_port()),
    }
    yield env
    subprocess.run(
        ["python3", str(REPO / "deploy/local/stack.py"), "down"],
        env={**os.environ, **env},
        capture_output=True,
    )
    shutil.rmtree(state, ignore_errors=True)


async def _get(open_s3: OpenS3, env: dict[str, str], key: str) -> bytes:
    async with open_s3(env) as s3:
        got = await s3.get_object(Bucket=env["S3_BUCKET"], Key=key)
        async with got["Body"] as stream:
            return bytes(await stream.read())


async def test_mini_stack_up_down_leaves_nothing_and_keeps_data(
    mini_env: dict[str, str], run_stack: RunStack, open_s3: OpenS3
) -> None:
    state = mini_env["PULSE_STACK_DIR"]
    up = run_stack("up", "postgres", "s3proxy", env=mini_env)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "started, healthy" in up.stdout

    again = run_stack("up", "postgres", "s3proxy", env=mini_env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("already running") == 2

    env = read_env_file(Path(state) / "env")
    assert env["DATABASE_URL"].endswith(f"@127.0.0.1:{mini_env['PULSE_PG_PORT']}/pulse")
    conn = await asyncpg.connect(env["DATABASE_URL"])
    try:
        await conn.execute("CREATE TABLE kept (id int PRIMARY KEY)")
        await conn.execute("INSERT INTO kept VALUES (42)")
        is_replication = await conn.fetchval(
            "SELECT rolreplication FROM pg_roles WHERE rolname = current_user"
        )
        assert is_replication
    finally:
        await conn.close()
    async with open_s3(env) as s3:
        await s3.put_object(Bucket=env["S3_BUCKET"], Key="kept/object.txt", Body=b"still here")
    assert _processes_mentioning(f"{state}/"), "the mini stack should be running"

    down = run_stack("down", env=mini_env)
    assert down.returncode == 0, down.stdout + down.stderr
    assert _processes_mentioning(f"{state}/") == []
    status = run_stack("status", env=mini_env)
    assert status.returncode == 1 and "up   pid" not in status.stdout

    up = run_stack("up", "postgres", "s3proxy", env=mini_env)
    assert up.returncode == 0, up.stdout + up.stderr
    conn = await asyncpg.connect(env["DATABASE_URL"])  # same generated password
    try:
        assert await conn.fetchval("SELECT id FROM kept") == 42
    finally:
        await conn.close()
    assert await _get(open_s3, env, "kept/object.txt") == b"still here"

    restart = run_stack("restart", "s3proxy", env=mini_env)
    assert restart.returncode == 0, restart.stdout + restart.stderr
    assert await _get(open_s3, env, "kept/object.txt") == b"still here"

    down = run_stack("down", env=mini_env)
    assert down.returncode == 0
    assert _processes_mentioning(f"{state}/") == []


def test_taken_port_is_a_clear_error(mini_env: dict[str, str], run_stack: RunStack) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", int(mini_env["PULSE_S3_PORT"])))
        squatter.listen()
        result = run_stack("up", "s3proxy", env=mini_env)
    assert result.returncode == 1
    assert "already in use" in result.stderr
    assert "PULSE_S3_PORT=" in result.stderr
    assert _processes_mentioning(f"{mini_env['PULSE_STACK_DIR']}/") == []


def test_takeover_stops_another_stack_holding_the_ports(
    mini_env: dict[str, str], run_stack: RunStack
) -> None:
    first = mini_env
    second = {**mini_env, "PULSE_STACK_DIR": first["PULSE_STACK_DIR"] + "-second"}
    try:
        assert run_stack("up", "s3proxy", env=first).returncode == 0

        # CI=true implies takeover: switch both off for this call
        refused = run_stack(
            "up", "s3proxy", env={**second, "CI": "false", "PULSE_STACK_TAKEOVER": "0"}
        )
        assert refused.returncode == 1
        assert f"held by another Pulse stack ({first['PULSE_STACK_DIR']})" in refused.stderr

        took = run_stack("up", "s3proxy", env={**second, "PULSE_STACK_TAKEOVER": "1"})
        assert took.returncode == 0, took.stdout + took.stderr
        assert _processes_mentioning(f"{first['PULSE_STACK_DIR']}/") == []
        assert _processes_mentioning(f"{second['PULSE_STACK_DIR']}/")
    finally:
        run_stack("down", env=second)
        shutil.rmtree(second["PULSE_STACK_DIR"], ignore_errors=True)
    assert _processes_mentioning(f"{second['PULSE_STACK_DIR']}/") == []


async def _shown_soon(admin: asyncpg.Connection, setting: str, want: str) -> str:
    """The server's value of `setting` once it reads `want`, or after 5 s (a reload is a
    signal the server handles a moment later)."""
    for _ in range(50):
        if (shown := await admin.fetchval(f"SHOW {setting}")) == want:
            return str(shown)
        await asyncio.sleep(0.1)
    return str(await admin.fetchval(f"SHOW {setting}"))


async def test_up_on_a_running_cluster_applies_an_edited_pulse_conf(
    mini_env: dict[str, str], run_stack: RunStack
) -> None:
    up = run_stack("up", "postgres", env=mini_env)
    assert up.returncode == 0, up.stdout + up.stderr
    state = Path(mini_env["PULSE_STACK_DIR"])
    env = read_env_file(state / "env")
    rendered = state / "pg" / "data" / "pulse.conf"
    template_line = "backend_flush_after = 256kB"
    assert template_line in rendered.read_text()
    # The running server drifts from deploy/local/postgres/pulse.conf (as after a git pull
    # that edits it): its rendered copy says otherwise and has been loaded.
    rendered.write_text(rendered.read_text().replace(template_line, "backend_flush_after = 0"))
    admin = await asyncpg.connect(env["PULSE_PG_ADMIN_URL"])
    try:
        await admin.execute("SELECT pg_reload_conf()")
        assert await _shown_soon(admin, "backend_flush_after", "0") == "0"

        again = run_stack("up", "postgres", env=mini_env)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "already running; pulse.conf changed, reloaded" in again.stdout
        assert "restart postgres" not in again.stdout
        assert template_line in rendered.read_text()
        assert await _shown_soon(admin, "backend_flush_after", "256kB") == "256kB"

        unchanged = run_stack("up", "postgres", env=mini_env)
        assert "already running\n" in unchanged.stdout, unchanged.stdout
    finally:
        await admin.close()
