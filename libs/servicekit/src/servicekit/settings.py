"""Typed, frozen settings: every service subclasses `ServiceSettings` with its own env prefix.

`load_settings` validates at start-up; a bad value stops the process with a message that names
the environment variable, never a stack trace.
"""

from __future__ import annotations

import sys
from typing import Any, Literal, TypeVar

from pydantic import AliasChoices, Field, FilePath, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class KafkaSettings(BaseSettings):
    """Where Kafka is and how to authenticate to it; read without a prefix so every service,
    the CLI and the benchmarks share `.stack/env` and one set of `KAFKA_*` variables.

    PLAINTEXT (the local stack's default listener), SSL (TLS with a CA bundle and an optional
    client certificate), or SASL_SSL with SCRAM-SHA-512 (user + password) or OAUTHBEARER (AWS
    MSK IAM: a token signed with the default AWS credential chain, IRSA on EKS). The client
    options are built from these in `servicekit.kafka_auth`, nowhere else.
    """

    # populate_by_name: tests pass kafka_msk_iam_region=..., the environment its alias
    model_config = SettingsConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    kafka_bootstrap_servers: str = Field(default="127.0.0.1:59092", min_length=1)
    kafka_client_id_prefix: str = "pulse"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "OAUTHBEARER"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    # None: the system trust store (MSK's certificates are publicly trusted)
    kafka_ssl_cafile: FilePath | None = None
    kafka_ssl_certfile: FilePath | None = None  # client certificate (mutual TLS), PEM
    kafka_ssl_keyfile: FilePath | None = None  # its unencrypted PEM key
    # AWS region the MSK IAM token is signed for; AWS_REGION when unset
    kafka_msk_iam_region: str | None = Field(
        default=None, validation_alias=AliasChoices("KAFKA_MSK_IAM_REGION", "AWS_REGION")
    )

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSettings:
        protocol, mechanism = self.kafka_security_protocol, self.kafka_sasl_mechanism
        if protocol == "SASL_SSL" and mechanism is None:
            raise ValueError(
                "KAFKA_SASL_MECHANISM is required when KAFKA_SECURITY_PROTOCOL=SASL_SSL"
            )
        if protocol != "SASL_SSL" and mechanism is not None:
            raise ValueError(
                f"KAFKA_SASL_MECHANISM={mechanism} needs KAFKA_SECURITY_PROTOCOL=SASL_SSL "
                f"(it is {protocol})"
            )
        if mechanism == "SCRAM-SHA-512" and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError(
                "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD are required when "
                "KAFKA_SASL_MECHANISM=SCRAM-SHA-512"
            )
        if mechanism == "OAUTHBEARER" and not self.kafka_msk_iam_region:
            raise ValueError(
                "KAFKA_MSK_IAM_REGION (or AWS_REGION) is required when "
                "KAFKA_SASL_MECHANISM=OAUTHBEARER"
            )
        if (self.kafka_ssl_certfile is None) != (self.kafka_ssl_keyfile is None):
            raise ValueError("KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together")
        if protocol == "PLAINTEXT" and (self.kafka_ssl_cafile or self.kafka_ssl_certfile):
            raise ValueError(
                "KAFKA_SSL_* is set but KAFKA_SECURITY_PROTOCOL=PLAINTEXT would ignore it"
            )
        return self


class ServiceSettings(BaseSettings):
    """Base of every service's settings. Subclasses set `env_prefix` (e.g. `INGEST_`)."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", env_prefix="PULSE_")

    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")
    log_json: bool = True
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=0, ge=0, le=65535)  # health/metrics port; 0 = none
    shutdown_grace_s: float = Field(default=25.0, gt=0)
    # HTTP services keep an idle keep-alive connection this long: longer than nginx keeps its
    # idle upstream connections (60 s), so nginx is the side that closes one. The other way
    # round (uvicorn's default is 5 s) a request nginx sends on a connection the app is closing
    # at that moment fails, and nginx answers a POST with 502 (it never retries those).
    http_keepalive_s: float = Field(default=75.0, gt=0)


S = TypeVar("S", bound=BaseSettings)


class SettingsError(SystemExit):
    """Raised (as an exit) when settings fail validation; the message names each variable."""


def describe_errors(cls: type[BaseSettings], exc: ValidationError) -> str:
    prefix = str(cls.model_config.get("env_prefix", "") or "")
    lines = [f"invalid settings for {cls.__name__}:"]
    for error in exc.errors():
        field = ".".join(str(part) for part in error.get("loc", ()))
        message = error.get("msg", "invalid")
        if not field:  # a check across fields: its message names the variables itself
            lines.append(f"  {message.removeprefix('Value error, ')}")
            continue
        lines.append(f"  {prefix}{field}".upper() + f": {message}")
    return "\n".join(lines)


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Build settings from the environment; on error print which variable is wrong and exit 2."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        message = describe_errors(cls, exc)
        print(message, file=sys.stderr)
        raise SettingsError(2) from exc
