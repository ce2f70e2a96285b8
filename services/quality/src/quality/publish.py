"""Results and alerts onto Kafka: `quality.results.v1` (archived as dq_results) and `alerts.v1`.

The archiver writes `quality.results.v1` into `archive/dq_results/` like every other dataset
(same layout, same Parquet writer, same catalog and Athena DDL), so results are data without
a second writer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from contracts.events import AlertRaised, DataQualityResult
from servicekit.kafka import encode_event, encode_key, make_producer
from servicekit.settings import KafkaSettings

CLIENT_ID = "quality"


async def publish(
    kafka: KafkaSettings,
    *,
    results_topic: str,
    alerts_topic: str,
    results: Sequence[DataQualityResult],
    alerts: Sequence[AlertRaised],
) -> None:
    producer = make_producer(kafka, client_id=CLIENT_ID)
    await producer.start()
    try:
        sends = [
            await producer.send(results_topic, encode_event(r), key=encode_key(r.dataset))
            for r in results
        ]
        sends += [
            await producer.send(alerts_topic, encode_event(a), key=encode_key(a.subject))
            for a in alerts
        ]
        await asyncio.gather(*sends)  # every record acknowledged (acks=all) before returning
    finally:
        await producer.stop()
