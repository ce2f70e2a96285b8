"""`pulse up`'s local dashboard viewer key: generated once, private, reused; the env wins."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pulse_cli.processes import dashboard_viewer_key, service_specs


def test_viewer_key_is_generated_once_and_kept_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DASHBOARD_VIEWER_KEYS", raising=False)
    (tmp_path / ".stack").mkdir()
    key = dashboard_viewer_key(tmp_path)
    path = tmp_path / ".stack" / "secrets" / "dashboard_viewer_key"
    assert len(key) >= 16 and path.read_text().strip() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert dashboard_viewer_key(tmp_path) == key
    [spec] = [s for s in service_specs(tmp_path) if s.name == "dashboard"]
    assert spec.env["DASHBOARD_VIEWER_KEYS"] == key
    assert spec.health_url == "http://127.0.0.1:58003/healthz"


def test_configured_viewer_keys_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASHBOARD_VIEWER_KEYS", "first-viewer-key-123, second-viewer-key-45")
    assert dashboard_viewer_key(tmp_path) == "first-viewer-key-123"
    assert not (tmp_path / ".stack").exists()


def test_no_stack_no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DASHBOARD_VIEWER_KEYS", raising=False)
    assert len(dashboard_viewer_key(tmp_path)) >= 16  # a key for this run only
    assert not (tmp_path / ".stack").exists()
