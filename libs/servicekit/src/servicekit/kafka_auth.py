"""Kafka security from `KafkaSettings`: the aiokafka options (TLS context, SASL/SCRAM, MSK IAM
token provider) every Pulse client uses, and the start-up check that turns a refused credential
or an untrusted certificate into one clear message naming the setting.

aiokafka only logs why a bootstrap failed ("Unable to bootstrap from ...") and Faust retries;
`check_kafka_access` connects once itself, so the cause is known and reported before any client
loops on it.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from functools import cache
from typing import Any

from aiokafka.abc import AbstractTokenProvider
from aiokafka.conn import create_conn
from aiokafka.errors import (
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from servicekit.settings import KafkaSettings

log = logging.getLogger(__name__)

# A token is signed again this long before it expires (MSK tokens live 15 minutes).
TOKEN_REFRESH_MARGIN_S = 60.0


class KafkaAccessError(SystemExit):
    """Kafka refused this client's TLS or credentials: start-up stops with the message (exit
    status 1, the message on stderr), never a retry loop; the message names the setting."""


class MskIamTokenProvider(AbstractTokenProvider):  # type: ignore[misc]  # aiokafka is untyped
    """SASL/OAUTHBEARER tokens for AWS MSK IAM, from AWS's signer and the default credential
    chain (IRSA's web identity on EKS). A token is reused until a minute before it expires:
    aiokafka asks for one on every new connection."""

    def __init__(self, region: str) -> None:
        self.region = region
        self._token: str | None = None
        self._expires_at_s = 0.0
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        async with self._lock:
            if self._token is None or time.time() > self._expires_at_s - TOKEN_REFRESH_MARGIN_S:
                # Signing reads credentials (a file or an STS call under IRSA): off the loop.
                token, expires_at_ms = await asyncio.to_thread(_sign_msk_token, self.region)
                self._token, self._expires_at_s = token, expires_at_ms / 1000
            return self._token


def _sign_msk_token(region: str) -> tuple[str, int]:
    from aws_msk_iam_sasl_signer import MSKAuthTokenProvider  # boto3 only when MSK IAM is on

    token, expires_at_ms = MSKAuthTokenProvider.generate_auth_token(region)
    return str(token), int(expires_at_ms)


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    """The TLS context for SSL and SASL_SSL (verifying the broker's certificate and host name
    against KAFKA_SSL_CAFILE, or the system store), None for PLAINTEXT."""
    if kafka.kafka_security_protocol == "PLAINTEXT":
        return None
    return _ssl_context(
        kafka.kafka_ssl_cafile and str(kafka.kafka_ssl_cafile),
        kafka.kafka_ssl_certfile and str(kafka.kafka_ssl_certfile),
        kafka.kafka_ssl_keyfile and str(kafka.kafka_ssl_keyfile),
    )


@cache  # one context per process and file set: loading a CA bundle costs milliseconds
def _ssl_context(cafile: str | None, certfile: str | None, keyfile: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=cafile)
    if certfile is not None:
        context.load_cert_chain(certfile, keyfile)
    return context


@cache
def _token_provider(region: str) -> MskIamTokenProvider:
    return MskIamTokenProvider(region)


def security_options(kafka: KafkaSettings) -> dict[str, Any]:
    """aiokafka's keyword arguments for `kafka`'s security settings (producer, consumer and
    admin client take the same ones); PLAINTEXT gives {"security_protocol": "PLAINTEXT"}."""
    options: dict[str, Any] = {"security_protocol": kafka.kafka_security_protocol}
    context = ssl_context(kafka)
    if context is not None:
        options["ssl_context"] = context
    mechanism = kafka.kafka_sasl_mechanism
    if mechanism == "SCRAM-SHA-512":
        assert kafka.kafka_sasl_password is not None  # KafkaSettings checked it
        options["sasl_mechanism"] = mechanism
        options["sasl_plain_username"] = kafka.kafka_sasl_username
        options["sasl_plain_password"] = kafka.kafka_sasl_password.get_secret_value()
    elif mechanism == "OAUTHBEARER":
        assert kafka.kafka_msk_iam_region is not None  # KafkaSettings checked it
        options["sasl_mechanism"] = mechanism
        options["sasl_oauth_token_provider"] = _token_provider(kafka.kafka_msk_iam_region)
    return options


def _host_port(server: str) -> tuple[str, int]:
    host, _, port = server.strip().rpartition(":")
    return host.strip("[]"), int(port)


def explain(kafka: KafkaSettings, exc: BaseException) -> str | None:
    """What the operator must fix, naming the setting, when `exc` (raised while connecting)
    is a TLS or authentication failure; None for anything else (e.g. a broker still down)."""
    cafile = kafka.kafka_ssl_cafile or "the system trust store"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"the Kafka broker's TLS certificate is not trusted ({exc.verify_message}): "
            f"KAFKA_SSL_CAFILE ({cafile}) must hold the CA that signed it, for the host name "
            f"in KAFKA_BOOTSTRAP_SERVERS"
        )
    if isinstance(exc, ssl.SSLError):
        return (
            f"TLS handshake with the Kafka broker failed ({exc.reason or exc}): check that "
            f"KAFKA_BOOTSTRAP_SERVERS names a TLS listener for "
            f"KAFKA_SECURITY_PROTOCOL={kafka.kafka_security_protocol}, and "
            f"KAFKA_SSL_CERTFILE/KAFKA_SSL_KEYFILE if the broker wants a client certificate"
        )
    if isinstance(exc, SaslAuthenticationFailed):
        if kafka.kafka_sasl_mechanism == "OAUTHBEARER":
            return (
                f"Kafka refused the MSK IAM token ({exc}): check the AWS credentials (the IRSA "
                f"role's kafka-cluster:Connect permission) and KAFKA_MSK_IAM_REGION "
                f"({kafka.kafka_msk_iam_region})"
            )
        return (
            f"Kafka refused the SASL credentials ({exc}): check KAFKA_SASL_USERNAME "
            f"({kafka.kafka_sasl_username}) and KAFKA_SASL_PASSWORD for "
            f"KAFKA_SASL_MECHANISM={kafka.kafka_sasl_mechanism}"
        )
    if isinstance(exc, UnsupportedSaslMechanismError):
        return f"KAFKA_SASL_MECHANISM={kafka.kafka_sasl_mechanism} is not enabled there: {exc}"
    return None


async def check_kafka_access(kafka: KafkaSettings, *, timeout_s: float = 10.0) -> None:
    """Connect to the bootstrap servers once with `kafka`'s security settings (TLS handshake,
    ApiVersions, SASL authentication). Raises KafkaAccessError naming the setting when a TLS
    or credential check fails; returns when one server accepted the client, or when none was
    reachable at all (the client's own start reports that as it always has)."""
    options = security_options(kafka)
    for server in kafka.kafka_bootstrap_servers.split(","):
        if not server.strip():
            continue
        host, port = _host_port(server)
        try:
            conn = await create_conn(
                host,
                port,
                client_id=f"{kafka.kafka_client_id_prefix}-access-check",
                request_timeout_ms=int(timeout_s * 1000),
                **options,
            )
        except (TimeoutError, OSError, KafkaError) as exc:
            reason = explain(kafka, exc)
            if reason is not None:
                message = f"Kafka at {host}:{port}: {reason}"
                log.critical("%s", message)
                raise KafkaAccessError(message) from exc
            log.warning("Kafka at %s:%s not reachable: %s", host, port, exc)
            continue
        conn.close()
        return


def env_security_options() -> dict[str, Any]:
    """`security_options` for the `KAFKA_*` settings of the environment: for bare aiokafka
    clients outside a service (the benchmarks' baselines), which must authenticate the same
    way."""
    return security_options(KafkaSettings())
