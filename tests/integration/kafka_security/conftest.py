"""Fixtures for the clients over the local broker's TLS + SCRAM-SHA-512 listener
(deploy/local/stack.py makes its CA, certificate and user; `.stack/env` lists them as
PULSE_KAFKA_TLS_* / PULSE_KAFKA_SCRAM_*), and the harnesses of the cdc_processor and archiver
tests, loaded from their folders rather than copied."""

from __future__ import annotations

import socket
from pathlib import Path
from types import ModuleType

import pytest
from pulse_cli.scripts import load_script
from servicekit.settings import KafkaSettings

INTEGRATION = Path(__file__).resolve().parents[1]
TLS_VARS = (
    "PULSE_KAFKA_TLS_BOOTSTRAP_SERVERS",
    "PULSE_KAFKA_TLS_CAFILE",
    "PULSE_KAFKA_SCRAM_USERNAME",
    "PULSE_KAFKA_SCRAM_PASSWORD",
)


@pytest.fixture(scope="session")
def secured_env(stack_env: dict[str, str]) -> dict[str, str]:
    """The KAFKA_* variables that put a Pulse process on the TLS + SCRAM listener."""
    missing = [name for name in TLS_VARS if name not in stack_env]
    restart = "`python3 deploy/local/stack.py restart kafka` gives the broker its TLS listener"
    if missing:
        pytest.fail(f"{', '.join(missing)} not in the stack's env: {restart}", pytrace=False)
    server = stack_env["PULSE_KAFKA_TLS_BOOTSTRAP_SERVERS"]
    host, _, port = server.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError:
        pytest.fail(f"nothing listens on {server}: {restart}", pytrace=False)
    return {
        "KAFKA_BOOTSTRAP_SERVERS": server,
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": stack_env["PULSE_KAFKA_SCRAM_USERNAME"],
        "KAFKA_SASL_PASSWORD": stack_env["PULSE_KAFKA_SCRAM_PASSWORD"],
        "KAFKA_SSL_CAFILE": stack_env["PULSE_KAFKA_TLS_CAFILE"],
    }


def settings_of(env: dict[str, str]) -> KafkaSettings:
    """KafkaSettings from KAFKA_* variables, as a service reads them."""
    return KafkaSettings(**{name.lower(): value for name, value in env.items()})


@pytest.fixture(scope="session")
def secured_kafka(secured_env: dict[str, str]) -> KafkaSettings:
    return settings_of(secured_env)


@pytest.fixture(scope="session")
def cdc_harness() -> ModuleType:
    """tests/integration/cdc_processor/conftest.py: Worker, TopicTail."""
    return load_script(INTEGRATION / "cdc_processor" / "conftest.py", "pulse_it_cdc_harness")


@pytest.fixture(scope="session")
def archiver_harness() -> ModuleType:
    """tests/integration/s3_archiver/archiver_harness.py: Scenario, ArchiverProcess."""
    return load_script(
        INTEGRATION / "s3_archiver" / "archiver_harness.py", "pulse_it_archiver_harness"
    )
