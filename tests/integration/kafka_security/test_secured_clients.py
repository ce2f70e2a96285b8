"""servicekit's clients over the broker's TLS + SCRAM listener, and the start-up error a wrong
password or an untrusted certificate gives: a message naming the setting, at once, from the
library and from the services' processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from aiokafka.admin import NewTopic
from conftest import settings_of
from servicekit.kafka import make_admin, make_consumer, make_producer
from servicekit.kafka_auth import KafkaAccessError
from servicekit.settings import KafkaSettings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[3]
HEALTH_PORT = 61610  # this helper's range (61600-61699)


async def test_producer_and_consumer_round_trip_over_tls_and_scram(
    secured_kafka: KafkaSettings,
) -> None:
    topic = f"it.kafka-security.{uuid.uuid4().hex[:8]}"
    admin = make_admin(secured_kafka, client_id="it-security")
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
        producer = make_producer(secured_kafka, client_id="it-security")
        await producer.start()
        try:
            sent = {f"k{i}".encode(): f"value {i}".encode() for i in range(200)}
            for key, value in sent.items():
                await producer.send(topic, key=key, value=value)
            await producer.flush()
        finally:
            await producer.stop()
        group = f"it-security-{uuid.uuid4().hex[:8]}"
        consumer = make_consumer(secured_kafka, topic, group_id=group, client_id="it-security")
        await consumer.start()
        received: dict[bytes, bytes] = {}
        try:
            deadline = time.monotonic() + 60
            while len(received) < len(sent) and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    received.update((r.key, r.value) for r in records)
            await consumer.commit()
        finally:
            await consumer.stop()
        assert received == sent
        committed = await admin.list_consumer_group_offsets(group)
        assert sum(meta.offset for meta in committed.values()) == len(sent)
    finally:
        await admin.delete_topics([topic])
        await admin.close()


def wrong_password(env: dict[str, str], _: Path) -> dict[str, str]:
    return {**env, "KAFKA_SASL_PASSWORD": "not-the-password"}


def untrusted_ca(env: dict[str, str], throwaway_ca: Path) -> dict[str, str]:
    return {**env, "KAFKA_SSL_CAFILE": str(throwaway_ca)}


FAULTS = {
    "wrong password": (wrong_password, "KAFKA_SASL_PASSWORD", "refused the SASL credentials"),
    "untrusted certificate": (untrusted_ca, "KAFKA_SSL_CAFILE", "certificate is not trusted"),
}


@pytest.mark.parametrize("fault", FAULTS)
async def test_refused_tls_or_credentials_fail_the_client_start_naming_the_setting(
    secured_env: dict[str, str], throwaway_ca: Path, fault: str
) -> None:
    broken, setting, reason = FAULTS[fault]
    kafka = settings_of(broken(secured_env, throwaway_ca))
    consumer = make_consumer(kafka, "any-topic", group_id="never", client_id="it-security")
    started = time.monotonic()
    with pytest.raises(KafkaAccessError) as caught:
        await consumer.start()
    await consumer.stop()
    assert setting in str(caught.value.code) and reason in str(caught.value.code)
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("service", ["cdc_processor", "s3_archiver"])
@pytest.mark.parametrize("fault", FAULTS)
def test_service_with_refused_tls_or_credentials_exits_at_start_naming_the_setting(
    stack_env: dict[str, str],
    secured_env: dict[str, str],
    throwaway_ca: Path,
    tmp_path: Path,
    service: str,
    fault: str,
) -> None:
    broken, setting, reason = FAULTS[fault]
    env = {
        **os.environ,
        **stack_env,
        **broken(secured_env, throwaway_ca),
        "CDC_APP_ID": f"it-security-{uuid.uuid4().hex[:8]}",
        "CDC_DATA_DIR": str(tmp_path),
        "CDC_HTTP_PORT": str(HEALTH_PORT),
        "CDC_LOG_JSON": "false",
        "ARCHIVER_GROUP_ID": f"it-security-{uuid.uuid4().hex[:8]}",
        "ARCHIVER_ROOT_PREFIX": f"it-security/{uuid.uuid4().hex[:8]}",
        "ARCHIVER_HTTP_PORT": str(HEALTH_PORT),
        "ARCHIVER_LOG_JSON": "false",
    }
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", service],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,  # a retry loop would hang here
    )
    elapsed_s = time.monotonic() - started
    assert done.returncode != 0, done.stderr[-3000:]
    # The exit message itself (not only a log line): "Kafka at host:port: <reason> ... <setting>"
    said = [line for line in done.stderr.splitlines() if line.startswith("Kafka at ")]
    assert said and setting in said[-1] and reason in said[-1], done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert elapsed_s < 60
