"""Find, at run time, the settings each service reads at start-up.

A service's settings are the pydantic `BaseSettings` subclasses defined in its package
(`services/<name>/src/<pkg>/`), plus `servicekit.settings.KafkaSettings` when it talks to Kafka.
An environment variable is `env_prefix + FIELD` upper-cased unless the field declares a
`validation_alias` (a string or `AliasChoices`: any of the names counts).
"""

from __future__ import annotations

import importlib
import inspect
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, SecretStr
from pydantic_settings import BaseSettings

REPO = Path(__file__).resolve().parents[2]
SERVICES = REPO / "services"

_SETTINGS_CLASS = re.compile(
    r"^class \w+\([^)]*\b(BaseSettings|ServiceSettings|KafkaSettings)\b", re.M
)
_KAFKA_DEPENDENCIES = ("aiokafka", "faust-streaming", "faust", "confluent-kafka", "kafka-python")


@dataclass(frozen=True)
class SettingField:
    name: str
    env_names: tuple[str, ...]  # the first is the one manifests should use
    required: bool
    default: Any
    secret: bool


@dataclass(frozen=True)
class SettingsSpec:
    qualname: str
    fields: tuple[SettingField, ...]


def service_packages() -> dict[str, Path]:
    """package name -> its source folder, for every `services/<name>/src/<name>/` present."""
    out = {}
    for service in sorted(SERVICES.iterdir()):
        package = service / "src" / service.name
        if package.is_dir():
            out[service.name] = package
    return out


def _env_names(cls: type[BaseSettings], name: str, info: Any) -> tuple[str, ...]:
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        names = tuple(str(choice).upper() for choice in alias.choices if isinstance(choice, str))
        if names:
            return names
    if isinstance(alias, str):
        return (alias.upper(),)
    prefix = str(cls.model_config.get("env_prefix", "") or "")
    return (f"{prefix}{name}".upper(),)


def describe(cls: type[BaseSettings]) -> SettingsSpec:
    fields = []
    for name, info in cls.model_fields.items():
        required = info.is_required()
        default = None if required else info.get_default(call_default_factory=True)
        if isinstance(default, SecretStr):
            default = default.get_secret_value()
        secret = "SecretStr" in str(info.annotation)
        fields.append(SettingField(name, _env_names(cls, name, info), required, default, secret))
    return SettingsSpec(f"{cls.__module__}.{cls.__qualname__}", tuple(fields))


def uses_kafka(package: Path) -> bool:
    pyproject = package.parents[1] / "pyproject.toml"
    deps = tomllib.loads(pyproject.read_text()).get("project", {}).get("dependencies", [])
    names = {re.split(r"[<>=!~;\[ ]", dep, maxsplit=1)[0].strip().lower() for dep in deps}
    if names & set(_KAFKA_DEPENDENCIES):
        return True
    return any("KafkaSettings" in p.read_text() for p in package.rglob("*.py"))


def service_settings() -> dict[str, list[SettingsSpec]]:
    """package name -> the settings classes it reads (imports only modules defining one)."""
    from servicekit.settings import KafkaSettings

    out: dict[str, list[SettingsSpec]] = {}
    for pkg, package in service_packages().items():
        specs = []
        for path in sorted(package.rglob("*.py")):
            if not _SETTINGS_CLASS.search(path.read_text()):
                continue
            parts = path.relative_to(package.parent).with_suffix("").parts
            module_name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            module = importlib.import_module(module_name)
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if issubclass(cls, BaseSettings) and cls.__module__ == module_name:
                    specs.append(describe(cls))
        if uses_kafka(package):
            specs.append(describe(KafkaSettings))
        out[pkg] = specs
    return out
