"""`ensure_topics` against the stack's Kafka: a compacted topic is created with the configs
that make the broker compact it within the hour (a rolled segment, a low dirty ratio), and
with a tombstone lifetime a recovery cannot outrun; an ordinary topic gets none of them."""

from __future__ import annotations

import uuid

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from contracts import topics
from servicekit.settings import KafkaSettings
from servicekit.topic_admin import ensure_topics


async def described(bootstrap: str, name: str) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
        [(_, _, _, _, entries)] = response.resources
        return {entry[0]: entry[1] for entry in entries}
    finally:
        await admin.delete_topics([name])
        await admin.close()


async def test_a_compacted_topic_is_created_with_the_compaction_configs(
    stack_env: dict[str, str],
) -> None:
    bootstrap = stack_env["KAFKA_BOOTSTRAP_SERVERS"]
    run = uuid.uuid4().hex[:8]
    changelog = topics.TopicSpec(
        f"test-topic-admin-{run}-changelog", 1, topics.Producer.ANY, "key", compacted=True
    )
    plain = topics.TopicSpec(f"test-topic-admin-{run}", 1, topics.Producer.ANY, "key")
    await ensure_topics(KafkaSettings(kafka_bootstrap_servers=bootstrap), (changelog, plain))

    configs = await described(bootstrap, changelog.name)
    assert configs["cleanup.policy"] == "compact"
    assert int(configs["segment.ms"]) == topics.COMPACTION_SEGMENT_MS <= 3_600_000
    assert float(configs["min.cleanable.dirty.ratio"]) == topics.COMPACTION_MIN_DIRTY_RATIO
    assert int(configs["delete.retention.ms"]) == topics.COMPACTION_TOMBSTONE_RETENTION_MS

    defaults = await described(bootstrap, plain.name)
    assert defaults["cleanup.policy"] == "delete"
    assert int(defaults["segment.ms"]) > topics.COMPACTION_SEGMENT_MS  # the broker's 7 days
