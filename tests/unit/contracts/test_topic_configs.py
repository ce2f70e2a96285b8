"""The topic-level configs the topic creators (servicekit's `ensure_topics`, the k8s Job)
apply: a compacted topic is one the broker actually compacts, soon."""

from __future__ import annotations

from contracts import topics

# The longest recovery measured (docs/scaling.md: 1 M dedup claims under the former global
# tables took 278 s); a tombstone must outlive it with a wide margin.
LONGEST_RECOVERY_MS = 5 * 60 * 1000


def spec(**options: object) -> topics.TopicSpec:
    return topics.TopicSpec("t", 3, topics.Producer.ANY, "k", **options)  # type: ignore[arg-type]


def test_a_compacted_topic_rolls_and_cleans_its_segments_within_the_hour() -> None:
    configs = topics.topic_configs(spec(compacted=True))
    assert configs["cleanup.policy"] == "compact"
    # The active segment is never compacted: it must roll long before the broker's 7 days.
    assert int(configs["segment.ms"]) <= 3_600_000
    assert float(configs["min.cleanable.dirty.ratio"]) < 0.5  # the broker's default
    assert int(configs["delete.retention.ms"]) >= 10 * LONGEST_RECOVERY_MS


def test_an_ordinary_topic_keeps_the_broker_defaults() -> None:
    assert topics.topic_configs(spec()) == {}
    assert topics.topic_configs(spec(retention_ms=1000)) == {"retention.ms": "1000"}


def test_every_changelog_of_the_contracts_is_compacted_the_same_way() -> None:
    for contract in topics.ALL:
        configs = topics.topic_configs(contract)
        assert ("segment.ms" in configs) == contract.compacted, contract.name
