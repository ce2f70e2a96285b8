"""Partition counts: the contract's default unless PULSE_TOPIC_PARTITIONS overrides them,
read once in contracts.topics; a malformed or misspelt setting stops the process naming it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from contracts import topics


def counts_in_a_process(setting: str) -> subprocess.CompletedProcess[str]:
    code = "from contracts import topics as t; print(t.PARTITIONS, *(s.partitions for s in t.ALL))"
    env = {**os.environ, topics.PARTITIONS_SETTING: setting}
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_the_default_is_the_contracts() -> None:
    out = counts_in_a_process("")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(topics.DEFAULT_PARTITIONS)] * (1 + len(topics.ALL))


def test_star_sets_every_topic_and_a_name_one_topic() -> None:
    out = counts_in_a_process("*=6, pulse.dlq.v1=2")
    assert out.returncode == 0, out.stderr
    default, *per_topic = (int(n) for n in out.stdout.split())
    by_name = dict(zip((s.name for s in topics.ALL), per_topic, strict=True))
    assert default == 6 and by_name.pop(topics.DLQ.name) == 2
    assert set(by_name.values()) == {6}


@pytest.mark.parametrize(
    ("setting", "says"),
    [("*=0", "not <topic>=<count"), ("alerts.v1", "not <topic>=<count"), ("alert.v1=4", "unknown")],
)
def test_a_bad_setting_fails_at_import_naming_it(setting: str, says: str) -> None:
    out = counts_in_a_process(setting)
    assert out.returncode != 0
    assert topics.PARTITIONS_SETTING in out.stderr and says in out.stderr


def test_parse() -> None:
    assert topics.parse_partition_counts("") == {}
    assert topics.parse_partition_counts("*=4,alerts.v1=1") == {"*": 4, "alerts.v1": 1}
    with pytest.raises(topics.PartitionSettingError):
        topics.parse_partition_counts("alerts.v1=x")
