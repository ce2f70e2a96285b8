"""Drift between what the services read at start-up and what the manifests give them.

Discovers each service's settings at run time (tests/deploy/pulse_settings_discovery.py), so a
service that lands later is covered without editing this file. For every overlay, the
service's Deployment must provide: every required setting; every setting whose default points
at this machine (127.0.0.1 / localhost: right for the local stack, wrong in a pod); every
secret whose default is a dev value; a bind address other than loopback; and an HTTP port equal
to the container's `http` port.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pulse_k8s import OVERLAYS, REPO, objects, pod_spec
from pulse_settings_discovery import SettingField, service_packages, service_settings

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@pytest.fixture(scope="module")
def settings_by_service() -> dict[str, Any]:
    return service_settings()


def provided_env(docs: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str | None]:
    """name -> plain value (None when it comes from a Secret or a field reference)."""
    maps = objects(docs, "ConfigMap")
    out: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            ref = source["configMapRef"]["name"]
            assert ref in maps, f"envFrom names a ConfigMap {ref} that is not rendered"
            out.update(maps[ref].get("data", {}))
    for env in container.get("env", []):
        out[env["name"]] = env.get("value")
    return out


def must_provide(field: SettingField) -> str | None:
    """Why a setting must be set by the manifests, or None when its default is fine there."""
    if field.required:
        return "required (no default)"
    if isinstance(field.default, str) and any(host in field.default for host in LOOPBACK):
        return f"default {field.default!r} points at this machine"
    if field.secret and field.default is not None:
        return "secret with a dev default"
    return None


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_start_up_setting_is_provided(
    overlay: str, rendered: dict[str, list[dict[str, Any]]], settings_by_service: dict[str, Any]
) -> None:
    docs = rendered[overlay]
    deployments = objects(docs, "Deployment")
    cronjobs = objects(docs, "CronJob")
    problems = []
    for pkg, specs in settings_by_service.items():
        name = pkg.replace("_", "-")
        # A job-only service (quality) runs as CronJobs `<name>-<job>` and has no Deployment:
        # each CronJob's container must provide the settings.
        workloads = (
            [deployments[name]]
            if name in deployments
            else [job for job_name, job in cronjobs.items() if job_name.startswith(f"{name}-")]
        )
        if not workloads:
            problems.append(f"service {pkg} has no Deployment {name} in deploy/k8s/base")
            continue
        for workload in workloads:
            problems += _check_workload(overlay, docs, name, workload, specs)
    assert not problems, "\n".join(problems)


def _check_workload(
    overlay: str, docs: list[dict[str, Any]], name: str, workload: dict[str, Any], specs: Any
) -> list[str]:
    problems: list[str] = []
    container = pod_spec(workload)["containers"][0]
    env = provided_env(docs, container)
    for spec in specs:
        for field in spec.fields:
            reason = must_provide(field)
            if reason and not set(field.env_names) & set(env):
                problems.append(
                    f"{overlay}: {name} does not set {field.env_names[0]} "
                    f"({spec.qualname}.{field.name}: {reason})"
                )
            if field.name == "http_host":
                value = next((env[n] for n in field.env_names if n in env), field.default)
                if value in LOOPBACK:
                    problems.append(f"{overlay}: {name} binds {value}; probes cannot reach it")
            if field.name == "http_port":
                value = next((env[n] for n in field.env_names if n in env), field.default)
                ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
                if value and int(value) != ports.get("http"):
                    problems.append(
                        f"{overlay}: {name} listens on {value} but its http port is "
                        f"{ports.get('http')}"
                    )
        reads_endpoint = any(f.name == "s3_endpoint_url" for f in spec.fields)
        if overlay == "k3s" and reads_endpoint and "S3_ENDPOINT_URL" not in env:
            problems.append(f"k3s: {name} reads S3_ENDPOINT_URL but is not given MinIO's")
    return problems


def test_discovery_finds_the_services_settings(settings_by_service: dict[str, Any]) -> None:
    """Guards the test above against discovering nothing."""
    with_settings = [pkg for pkg, specs in settings_by_service.items() if specs]
    assert with_settings, "no settings class found under services/*/src"
    ports = [
        f
        for pkg in with_settings
        for s in settings_by_service[pkg]
        for f in s.fields
        if f.name == "http_port"
    ]
    assert ports, "no service declares http_port: discovery is broken"


def test_missing_setting_is_reported() -> None:
    assert must_provide(SettingField("x", ("X",), True, None, False))
    assert must_provide(SettingField("k", ("K",), False, "127.0.0.1:9092", False))
    assert must_provide(SettingField("s", ("S",), False, "dev-key", True))
    assert must_provide(SettingField("n", ("N",), False, 10, False)) is None


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_python_module_command_exists(
    overlay: str, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    """`python -m <pkg>` in a manifest must name a service package with a __main__.py."""
    packages = service_packages()
    for obj in rendered[overlay]:
        if obj["kind"] not in ("Deployment", "StatefulSet", "Job", "CronJob"):
            continue
        spec = pod_spec(obj)
        for c in spec.get("initContainers", []) + spec["containers"]:
            argv = [*c.get("command", []), *c.get("args", [])]
            if "-m" in argv and c["image"].split("/")[-2:-1] == ["pulse"]:
                module = argv[argv.index("-m") + 1]
                main = Path("services") / module / "src" / module / "__main__.py"
                assert module in packages and (REPO / main).exists(), f"{c['name']}: no {main}"
