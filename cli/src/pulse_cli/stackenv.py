"""Where the repository and the local stack are: the repo root and `.stack/env`."""

from __future__ import annotations

import os
import shlex
from pathlib import Path


def repo_root(start: Path | None = None) -> Path:
    """The nearest folder above `start` (default: cwd) holding `deploy/local/stack.py`."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "deploy" / "local" / "stack.py").is_file():
            return folder
    raise FileNotFoundError("not inside the Pulse repository (no deploy/local/stack.py above)")


def read_env_file(path: Path) -> dict[str, str]:
    """Shell-sourceable KEY=VALUE lines (comments, `export ` and quotes allowed)."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        line = line.removeprefix("export ").strip()
        key, _, value = line.partition("=")
        parts = shlex.split(value) if value.strip() else [""]
        values[key.strip()] = parts[0] if parts else ""
    return values


def stack_env(root: Path) -> dict[str, str]:
    """`.stack/env`, with anything already set in the process environment winning."""
    values = read_env_file(root / ".stack" / "env")
    values.update({k: v for k, v in os.environ.items() if k in values})
    return values
