"""deploy/local/stack.py's TLS + SCRAM listener material (no stack needed): the CA and broker
certificate it makes, and the Connect worker's Kafka client settings in both modes."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path
from types import ModuleType

import pytest


@pytest.fixture
def stack(stack_module: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    monkeypatch.setenv("PULSE_STACK_DIR", str(tmp_path / "stack"))
    monkeypatch.setenv("PULSE_KAFKA_TLS_PORT", "61699")
    return stack_module.Stack.from_env()


def test_broker_certificate_is_signed_by_the_stack_ca_for_the_loopback_address(
    stack_module: ModuleType, stack: object
) -> None:
    sec = stack_module.Secrets.load(stack)
    stack_module.ensure_kafka_tls(stack, sec)
    tls = stack.kafka_tls_dir  # type: ignore[attr-defined]
    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", str(tls / "ca.pem"), "-verify_ip", "127.0.0.1",
         str(tls / "broker.pem")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    # What the broker loads: the PKCS#12 opens with the generated password.
    opened = subprocess.run(
        ["openssl", "pkcs12", "-in", str(tls / "broker.p12"), "-nokeys", "-passin",
         f"pass:{sec.kafka_keystore_password}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert opened.returncode == 0 and "BEGIN CERTIFICATE" in opened.stdout, opened.stderr
    assert (tls / "ca.key").stat().st_mode & 0o077 == 0  # the CA key is the owner's alone
    ssl.create_default_context(cafile=str(tls / "ca.pem"))  # a CA file Python clients load
    before = (tls / "broker.p12").read_bytes()
    stack_module.ensure_kafka_tls(stack, sec)  # made once: a second `up` keeps it
    assert (tls / "broker.p12").read_bytes() == before


def test_connect_worker_uses_the_tls_listener_only_when_asked(
    stack_module: ModuleType, stack: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    sec = stack_module.Secrets.load(stack)
    plain = stack_module.connect_kafka_client(stack, sec)
    assert plain["CONNECT_BOOTSTRAP_SERVERS"] == f"127.0.0.1:{stack.ports['kafka']}"  # type: ignore[attr-defined]
    assert plain["CONNECT_KAFKA_SECURITY"] == "security.protocol=PLAINTEXT"
    monkeypatch.setenv("PULSE_CONNECT_KAFKA_SECURITY", "SASL_SSL")
    secured = stack_module.connect_kafka_client(stack_module.Stack.from_env(), sec)
    assert secured["CONNECT_BOOTSTRAP_SERVERS"] == "127.0.0.1:61699"
    lines = secured["CONNECT_KAFKA_SECURITY"].splitlines()
    for prefix in ("", "producer.", "consumer.", "admin."):
        assert f"{prefix}security.protocol=SASL_SSL" in lines
        assert f"{prefix}sasl.mechanism=SCRAM-SHA-512" in lines
        assert any(
            line.startswith(f"{prefix}sasl.jaas.config=") and sec.kafka_scram_password in line
            for line in lines
        )
    monkeypatch.setenv("PULSE_CONNECT_KAFKA_SECURITY", "TLS")
    with pytest.raises(stack_module.StackError, match="PULSE_CONNECT_KAFKA_SECURITY"):
        stack_module.Stack.from_env()
