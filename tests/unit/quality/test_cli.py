"""`python -m quality --help` prints usage and exits 0 without reading a setting or connecting
(the image test runs it with no stack settings); an unknown command is refused by name."""

from __future__ import annotations

import subprocess
import sys

import pytest
from quality.main import parse_args


def test_help_prints_usage_and_exits_0_with_no_settings() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "quality", "--help"],
        env={"PATH": "/usr/bin:/bin", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m quality")
    assert "check,report,schedule" in result.stdout


def test_the_command_defaults_to_check_and_an_unknown_one_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert parse_args([]).command == "check"
    assert parse_args(["report"]).command == "report"
    with pytest.raises(SystemExit) as exc:
        parse_args(["bogus"])
    assert exc.value.code == 2
    assert "invalid choice: 'bogus'" in capsys.readouterr().err
