"""Kafka security settings: one set of KAFKA_* variables, checked at start-up, turned into the
aiokafka options (and Faust credentials) every client uses."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import faust
import pytest
from aiokafka.errors import SaslAuthenticationFailed
from cdc_processor.app import faust_credentials
from servicekit import kafka_auth
from servicekit.kafka import make_admin, make_consumer, make_producer
from servicekit.kafka_auth import MskIamTokenProvider, explain, security_options
from servicekit.settings import KafkaSettings, SettingsError, load_settings


@pytest.fixture
def ca_file(throwaway_ca: Path) -> Path:
    return throwaway_ca


def scram(ca_file: Path, **overrides: object) -> KafkaSettings:
    values: dict[str, object] = {
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_sasl_username": "pulse",
        "kafka_sasl_password": "s3cret",
        "kafka_ssl_cafile": ca_file,
    }
    return KafkaSettings(**(values | overrides))  # type: ignore[arg-type]


def test_plaintext_is_the_default_and_adds_no_tls_or_sasl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_SECURITY_PROTOCOL", raising=False)
    assert security_options(KafkaSettings()) == {"security_protocol": "PLAINTEXT"}


def test_scram_settings_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, ca_file: Path
) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "pulse")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "s3cret")
    monkeypatch.setenv("KAFKA_SSL_CAFILE", str(ca_file))
    kafka = load_settings(KafkaSettings)
    assert "s3cret" not in repr(kafka)  # SecretStr: never in a log line
    options = security_options(kafka)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("pulse", "s3cret")
    context = options["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [
        ((("commonName", "Throwaway test CA"),),)
    ]


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "KAFKA_SASL_MECHANISM is required"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"},
            "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD are required",
        ),
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL: Input should be"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"},
            "KAFKA_SSL_CAFILE: Path does not point to a file",
        ),
        ({"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"}, "needs KAFKA_SECURITY_PROTOCOL=SASL_SSL"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERTFILE": "/etc/hostname"},
            "KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together",
        ),
    ],
)
def test_inconsistent_security_settings_stop_start_up_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    named: str,
) -> None:
    for name in ("KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM", "KAFKA_SSL_CAFILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError):
        load_settings(KafkaSettings)
    assert named in capsys.readouterr().err


def test_msk_iam_needs_a_region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("KAFKA_MSK_IAM_REGION", raising=False)
    with pytest.raises(ValueError, match="KAFKA_MSK_IAM_REGION"):
        KafkaSettings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="OAUTHBEARER")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    kafka = KafkaSettings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="OAUTHBEARER")
    provider = security_options(kafka)["sasl_oauth_token_provider"]
    assert isinstance(provider, MskIamTokenProvider) and provider.region == "eu-west-1"


async def test_msk_iam_token_is_a_signed_kafka_connect_url_reused_until_near_expiry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # AWS's signer with static credentials (what IRSA's web identity resolves to): signing is
    # local, no AWS call.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    calls: list[str] = []
    sign = kafka_auth._sign_msk_token

    def counting(region: str) -> tuple[str, int]:
        calls.append(region)
        return sign(region)

    monkeypatch.setattr(kafka_auth, "_sign_msk_token", counting)
    provider = MskIamTokenProvider("eu-west-1")
    token = await provider.token()
    assert await provider.token() == token and calls == ["eu-west-1"]
    url = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert parts.netloc == "kafka.eu-west-1.amazonaws.com"
    assert query["Action"] == ["kafka-cluster:Connect"]
    assert query["X-Amz-Credential"][0].startswith("AKIDEXAMPLE/")
    provider._expires_at_s = 0.0  # expired: the next connection gets a fresh token
    await provider.token()
    assert calls == ["eu-west-1", "eu-west-1"]


async def test_every_client_factory_carries_the_security_options(ca_file: Path) -> None:
    kafka = scram(ca_file)
    producer = make_producer(kafka, client_id="t")
    consumer = make_consumer(kafka, "t", group_id="g", client_id="t")
    admin = make_admin(kafka, client_id="t")
    # the AIOKafkaClient each one wraps: what connects and authenticates
    for inner in (producer.client, consumer._client, admin._client):
        assert inner._security_protocol == "SASL_SSL"
        assert inner._sasl_mechanism == "SCRAM-SHA-512"
        assert inner._ssl_context is security_options(kafka)["ssl_context"]
    await consumer.stop()
    await producer.stop()


def test_faust_gets_the_same_credentials(ca_file: Path) -> None:
    credentials = faust_credentials(scram(ca_file))
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol.value == "SASL_SSL"
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert (credentials.username, credentials.password) == ("pulse", "s3cret")
    tls = faust_credentials(KafkaSettings(kafka_security_protocol="SSL", kafka_ssl_cafile=ca_file))
    assert isinstance(tls, faust.SSLCredentials) and tls.protocol.value == "SSL"
    assert faust_credentials(KafkaSettings(kafka_security_protocol="PLAINTEXT")) is None


def test_refused_credentials_and_untrusted_certificates_name_the_setting(ca_file: Path) -> None:
    kafka = scram(ca_file)
    refused = explain(kafka, SaslAuthenticationFailed("invalid credentials"))
    assert refused is not None and "KAFKA_SASL_PASSWORD" in refused
    untrusted = ssl.SSLCertVerificationError(1, "certificate verify failed")
    untrusted.verify_message = "self-signed certificate"
    message = explain(kafka, untrusted)
    assert message is not None and "KAFKA_SSL_CAFILE" in message and str(ca_file) in message
    assert explain(kafka, ConnectionRefusedError(111, "refused")) is None  # not a config error
