"""Every service's Dockerfile passes hadolint and the image rules (pulse_dockerfile.py here).

Services are discovered at collection time (`services/<name>/src/<name>/`), so a service that
lands without a Dockerfile fails here. The reference Dockerfile in deploy/k8s/README.md is held
to the same checks, which also proves the checks accept a correct file.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from pulse_dockerfile import check, command_argv, parse
from pulse_k8s import K8S, REPO
from pulse_settings_discovery import service_packages, service_settings

SERVICES = sorted(service_packages())


def listens(service: str) -> bool:
    """True when the service's settings declare an HTTP port with a non-zero default."""
    for spec in service_settings().get(service, []):
        for field in spec.fields:
            if field.name == "http_port" and field.default:
                return True
    return False


def hadolint(tools_bin: Path, dockerfile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tools_bin / "hadolint"), "--config", str(K8S / "hadolint.yaml"), str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def reference_dockerfile() -> str:
    readme = (K8S / "README.md").read_text()
    match = re.search(r"```dockerfile\n(.*?)```", readme, re.S)
    assert match, "deploy/k8s/README.md lost its reference Dockerfile"
    return match.group(1)


@pytest.mark.parametrize("service", SERVICES)
def test_service_has_a_dockerfile(service: str) -> None:
    path = REPO / "services" / service / "Dockerfile"
    assert path.exists(), (
        f"services/{service}/Dockerfile is missing (pattern: deploy/k8s/README.md)"
    )


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile_passes_hadolint(service: str, tools_bin: Path) -> None:
    path = REPO / "services" / service / "Dockerfile"
    if not path.exists():
        pytest.skip("no Dockerfile yet (test_service_has_a_dockerfile fails)")
    result = hadolint(tools_bin, path)
    assert result.returncode == 0, (
        f"hadolint services/{service}/Dockerfile:\n{result.stdout}{result.stderr}"
    )


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile_follows_the_image_rules(service: str) -> None:
    path = REPO / "services" / service / "Dockerfile"
    if not path.exists():
        pytest.skip("no Dockerfile yet (test_service_has_a_dockerfile fails)")
    problems = check(path.read_text(), service=service, listens=listens(service))
    assert not problems, f"services/{service}/Dockerfile:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile_command_module_exists(service: str) -> None:
    path = REPO / "services" / service / "Dockerfile"
    if not path.exists():
        pytest.skip("no Dockerfile yet (test_service_has_a_dockerfile fails)")
    _, stages = parse(path.read_text())
    argv = [
        p
        for i in stages[-1].instructions
        if i.keyword in ("CMD", "ENTRYPOINT")
        for p in command_argv(i.args)
    ]
    assert "-m" in argv, f"services/{service}/Dockerfile: no `python -m <module>` command"
    module = argv[argv.index("-m") + 1]
    main = REPO / "services" / module / "src" / module / "__main__.py"
    assert main.exists(), f"services/{service}/Dockerfile runs `python -m {module}`: no {main}"


def test_reference_dockerfile_passes_every_check(tools_bin: Path, tmp_path: Path) -> None:
    text = reference_dockerfile()
    assert check(text, service="ingest", listens=True) == []
    path = tmp_path / "Dockerfile"
    path.write_text(text)
    result = hadolint(tools_bin, path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_checks_reject_a_naive_dockerfile(tools_bin: Path, tmp_path: Path) -> None:
    naive = (
        "FROM python:3.12\nCOPY . /app\nRUN pip install uv && cd /app && uv sync\n"
        'CMD ["python", "/app/main.py"]\n'
    )
    assert check(naive, service="ingest", listens=True) == [
        "use a multi-stage build: a builder stage with uv, a final stage with the venv only"
    ]
    two_stage = naive.replace(
        "FROM python:3.12\n", "FROM python:3.12 AS build\nFROM python:3.12\n", 1
    )
    problems = "\n".join(check(two_stage, service="ingest", listens=True))
    for expected in ("python:3.11-slim", "uv sync", "non-root USER", "python", "HEALTHCHECK"):
        assert expected in problems, f"{expected!r} not reported in:\n{problems}"
    code_first = reference_dockerfile().replace(
        "COPY pyproject.toml uv.lock ./\n", "COPY pyproject.toml uv.lock ./\nCOPY libs/ libs/\n"
    )
    assert any("dependency layer" in p for p in check(code_first, service="ingest", listens=True))
    fixed_base = reference_dockerfile().replace("FROM ${BASE_IMAGE}", "FROM python:3.11-slim")
    assert any("ARG BASE_IMAGE" in p for p in check(fixed_base, service="ingest", listens=True))
    path = tmp_path / "Dockerfile"
    path.write_text(naive)
    assert hadolint(tools_bin, path).returncode != 0


MUST_IGNORE = (".stack", "tests", ".venv", "__pycache__", ".pytest_cache", ".mypy_cache", ".git")


def ignored_entries(path: Path) -> set[str]:
    lines = [line.strip() for line in path.read_text().splitlines()]
    return {
        line.removeprefix("**/").rstrip("/") for line in lines if line and not line.startswith("#")
    }


def test_root_dockerignore_keeps_state_caches_and_tests_out() -> None:
    entries = ignored_entries(REPO / ".dockerignore")
    assert not [name for name in MUST_IGNORE if name not in entries], entries


@pytest.mark.parametrize("service", SERVICES)
def test_the_ignore_file_each_build_uses_keeps_the_same_out(service: str) -> None:
    """BuildKit reads services/<name>/Dockerfile.dockerignore INSTEAD of the root .dockerignore
    when it exists: whichever file a service's build uses must keep these out (`COPY . ./`)."""
    own = REPO / "services" / service / "Dockerfile.dockerignore"
    path = own if own.exists() else REPO / ".dockerignore"
    missing = [name for name in MUST_IGNORE if name not in ignored_entries(path)]
    assert not missing, f"{path.relative_to(REPO)} (used for {service}) lets in {missing}"


def test_a_node_stage_may_build_page_assets_but_never_be_the_image() -> None:
    web_stage = "FROM ${NODE_IMAGE} AS web\nCOPY web/ /web/\nRUN npm ci\n"
    node_arg = "ARG NODE_IMAGE=node:20-bookworm-slim\n"
    reference = reference_dockerfile()
    at = reference.index("\nFROM ") + 1  # after the global ARGs
    with_web = node_arg + reference[:at] + web_stage + reference[at:]
    assert check(with_web, service="ingest", listens=True) == []
    node_final = node_arg + reference_dockerfile() + web_stage.replace(" AS web", "")
    assert any("python:3.11-slim" in p for p in check(node_final, service="ingest", listens=True))


def test_a_node_stage_takes_its_image_from_a_build_argument() -> None:
    """make images passes a node stand-in (NODE_IMAGE) where no registry is reachable."""
    literal = "FROM node:20-bookworm-slim AS web\nCOPY web/ /web/\nRUN npm ci\n"
    reference = reference_dockerfile()
    at = reference.index("\nFROM ") + 1
    problems = check(reference[:at] + literal + reference[at:], service="ingest", listens=True)
    assert any("ARG NODE_IMAGE=node:20-bookworm-slim" in p for p in problems), problems
