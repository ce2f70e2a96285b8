"""Create the contract topics a service reads and writes, if missing (idempotent).

The stack's Kafka does not auto-create topics: cdc_processor consuming a topic that does not
exist yet would leave its partitions unassigned until the next rebalance, and a producer's
first send to one would wait for metadata and time out.

Topics that exist are left as they are, configs included (docs/scaling.md has the
`kafka-configs.sh --alter` for a running deployment's changelogs).
"""

from __future__ import annotations

import logging

from aiokafka.admin import NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from contracts.topics import TopicSpec, topic_configs

from servicekit.kafka import make_admin
from servicekit.settings import KafkaSettings

log = logging.getLogger(__name__)


async def ensure_topics(
    kafka: KafkaSettings, specs: tuple[TopicSpec, ...], *, replication_factor: int = 1
) -> None:
    """Raises servicekit's KafkaAccessError when Kafka refuses TLS or the credentials."""
    admin = make_admin(kafka, client_id="topic-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in specs if spec.name not in existing]
        for spec in missing:
            config = topic_configs(spec)
            try:
                await admin.create_topics(
                    [NewTopic(spec.name, spec.partitions, replication_factor, topic_configs=config)]
                )
                log.info("created topic %s (%d partitions)", spec.name, spec.partitions)
            except TopicAlreadyExistsError:
                pass  # another worker won the race
    finally:
        await admin.close()
