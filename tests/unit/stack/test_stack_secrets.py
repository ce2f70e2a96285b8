"""deploy/local/stack.py's generated KRaft cluster id (no stack needed)."""

from __future__ import annotations

import base64
from types import ModuleType


def test_kraft_cluster_ids_never_read_as_an_option_and_decode_to_16_bytes(
    stack_module: ModuleType,
) -> None:
    # kafka-storage took an id starting with "-" for an option and the fresh stack failed to
    # format (a CI run, 1 in 64 random ids).
    ids = [stack_module.kraft_cluster_id() for _ in range(3000)]
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids)
    assert len(set(ids)) == len(ids)
