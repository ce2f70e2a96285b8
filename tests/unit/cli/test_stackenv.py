"""`.stack/env` parsing: shell-sourceable lines, comments, exports and quotes."""

from __future__ import annotations

from pathlib import Path

from pulse_cli.stackenv import read_env_file


def test_reads_shell_lines(tmp_path: Path) -> None:
    env = tmp_path / "env"
    env.write_text("# comment\nexport A=1\nB='two words'\nC=\"x=y\"\n\nD=\n")
    assert read_env_file(env) == {"A": "1", "B": "two words", "C": "x=y", "D": ""}


def test_missing_file_is_empty(tmp_path: Path) -> None:
    assert read_env_file(tmp_path / "nope") == {}
