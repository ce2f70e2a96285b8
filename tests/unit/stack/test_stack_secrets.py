"""deploy/local/stack.py's generated KRaft cluster id (no stack needed)."""

from __future__ import annotations

import base64
import importlib.util
import sys
from pathlib import Path

STACK_PY = Path(__file__).resolve().parents[3] / "deploy" / "local" / "stack.py"


def test_kraft_cluster_ids_never_read_as_an_option_and_decode_to_16_bytes() -> None:
    # kafka-storage took an id starting with "-" for an option and the fresh stack failed to
    # format (a CI run, 1 in 64 random ids).
    spec = importlib.util.spec_from_file_location("pulse_local_stack_ids", STACK_PY)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    ids = [module.kraft_cluster_id() for _ in range(3000)]
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids)
    assert len(set(ids)) == len(ids)
