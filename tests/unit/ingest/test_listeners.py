"""ingest.listeners: the optional unix socket beside TCP (INGEST_HTTP_UDS)."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import pytest
from ingest.listeners import SocketInUseError, bind_unix
from ingest.settings import IngestSettings


def test_binds_a_socket_nginx_workers_can_connect_to(tmp_path: Path) -> None:
    path = tmp_path / "ingest.sock"
    listener = bind_unix(path)
    try:
        listener.sock.listen()
        assert stat.S_IMODE(path.stat().st_mode) == 0o666
        assert listener.sock.get_inheritable()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(str(path))
    finally:
        listener.close()
    assert not path.exists()


def test_replaces_a_stale_socket_file_nobody_listens_on(tmp_path: Path) -> None:
    path = tmp_path / "ingest.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays, as after a killed process
    listener = bind_unix(path)
    listener.sock.listen()
    listener.close()
    assert not path.exists()


def test_refuses_a_socket_another_process_listens_on(tmp_path: Path) -> None:
    path = tmp_path / "ingest.sock"
    live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    live.bind(str(path))
    live.listen()
    try:
        with pytest.raises(SocketInUseError):
            bind_unix(path)
        assert path.is_socket()
    finally:
        live.close()


def test_close_leaves_a_file_another_process_bound_since(tmp_path: Path) -> None:
    path = tmp_path / "ingest.sock"
    listener = bind_unix(path)
    path.unlink()
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(str(path))
    try:
        listener.close()
        assert path.is_socket()
    finally:
        other.close()


def test_unix_socket_is_off_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INGEST_HTTP_UDS", raising=False)
    assert IngestSettings().http_uds is None
    monkeypatch.setenv("INGEST_HTTP_UDS", "/run/pulse/ingest.sock")
    assert IngestSettings().http_uds == Path("/run/pulse/ingest.sock")
