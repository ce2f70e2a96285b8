"""Read a Dockerfile into stages and instructions, and check the image rules of issue 7.

The rules (each problem is reported as a sentence saying what to fix):
multi-stage; every stage on python:3.11-slim, except a stage before the last on
node:<major>-slim that builds a page's static files (copied out with `COPY --from`), each base
taken from a build argument (BASE_IMAGE, NODE_IMAGE) so make images can pass stand-ins; uv
installs from uv.lock with --locked or --frozen; the dependency layer
(`uv sync --no-install-project|--no-install-workspace`) comes before any source code is
copied; no build tools or uv in the final stage; a non-root USER;
CMD/ENTRYPOINT run `python -m <service>`; a HEALTHCHECK on /healthz when the service listens.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field

BASE_IMAGE = re.compile(
    r"^(docker\.io/)?(library/)?python:3\.11(\.\d+)?-slim(-[a-z]+)?(@sha256:[0-9a-f]+)?$"
)
# A page's assets (the dashboard's `npm ci`) are built in a node stage; its files, never Node
# itself, reach the final image through `COPY --from`.
NODE_IMAGE = re.compile(r"^(docker\.io/)?(library/)?node:\d+(-[a-z]+)?-slim(@sha256:[0-9a-f]+)?$")
BUILD_TOOLS = ("build-essential", "gcc", "g++", "make", "clang", "cargo", "rustc", "git")


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, stages). Handles `\\` continuations and comments."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    logical: list[tuple[int, str]] = []
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        logical.append((start, buffer + stripped))
        buffer = ""
    for number, line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), words[0])
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif keyword == "ARG" and not stages:
            key, _, value = rest.partition("=")
            args[key.strip()] = value.strip().strip('"')
        elif stages:
            stages[-1].instructions.append(Instruction(keyword, rest, number))
    return args, stages


def command_argv(args: str) -> list[str]:
    """The argv of a CMD/ENTRYPOINT in exec (JSON) or shell form."""
    if args.startswith("["):
        return [str(part) for part in json.loads(args)]
    return shlex.split(args)


METADATA_FILES = re.compile(
    r"(^|/)(pyproject\.toml|uv\.lock|README[^/]*|LICENSE[^/]*|\.python-version)$"
)


def copy_sources(args: str) -> list[str]:
    """Sources of a COPY/ADD (none for `--from=` copies, which bring built artefacts)."""
    words = [w for w in (json.loads(args) if args.startswith("[") else shlex.split(args))]
    if any(w.startswith("--from") for w in words):
        return []
    paths = [w for w in words if not w.startswith("--")]
    return paths[:-1]


def is_code(source: str) -> bool:
    return not METADATA_FILES.search(source.rstrip("/"))


def check(text: str, *, service: str, listens: bool) -> list[str]:
    """Every rule the Dockerfile of `service` breaks, as instructions to fix it."""
    problems: list[str] = []
    args, stages = parse(text)
    if len(stages) < 2:
        return [
            "use a multi-stage build: a builder stage with uv, a final stage with the venv only"
        ]
    names = {s.name for s in stages if s.name}
    final = stages[-1]
    for stage in stages:
        if stage.base in names or BASE_IMAGE.match(stage.base):
            continue
        if stage is not final and NODE_IMAGE.match(stage.base):
            continue
        problems.append(f"FROM {stage.base}: base every stage on python:3.11-slim")
    builders = [s for s in stages[:-1] if not NODE_IMAGE.match(s.base)]
    # make images builds on a stand-in base where no registry is reachable: it passes
    # --build-arg BASE_IMAGE, so every Python stage's base must come from that argument.
    for line in re.findall(r"(?m)^FROM\s.*$", text):
        image = next(w for w in line.split()[1:] if not w.startswith("--"))
        resolved = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), image)
        if image in names:
            continue
        if NODE_IMAGE.match(resolved):
            if "NODE_IMAGE" not in args or not re.fullmatch(r"\$\{?NODE_IMAGE\}?", image):
                problems.append(
                    f"{line.strip()}: take the node stage's image as "
                    "`ARG NODE_IMAGE=node:20-bookworm-slim` and `FROM ${NODE_IMAGE}` "
                    "(make images passes a stand-in without a registry)"
                )
            continue
        if "BASE_IMAGE" not in args or not re.fullmatch(r"\$\{?BASE_IMAGE\}?", image):
            problems.append(
                f"{line.strip()}: take the base as `ARG BASE_IMAGE=python:3.11-slim` and "
                "`FROM ${BASE_IMAGE}` (make images passes a stand-in without a registry)"
            )
            break

    sync_lines = [
        i
        for s in builders
        for i in s.instructions
        if i.keyword == "RUN" and re.search(r"\buv\s+(sync|pip\s+sync)\b", i.args)
    ]
    if not sync_lines:
        problems.append("install dependencies with `uv sync` from uv.lock in the builder stage")
    elif not all(re.search(r"--(locked|frozen)\b", i.args) for i in sync_lines):
        problems.append("every `uv sync` needs --locked or --frozen (uv.lock is the truth)")
    copies_lock = any(
        i.keyword in ("COPY", "ADD") and "uv.lock" in i.args
        for s in builders
        for i in s.instructions
    ) or any("uv.lock" in i.args for i in sync_lines)  # RUN --mount=type=bind,source=uv.lock
    if not copies_lock:
        problems.append("copy uv.lock (or bind-mount it) into the builder before `uv sync`")

    # Dependency layer first: nothing under src/ (or the whole tree) is copied before the
    # first `uv sync --no-install-project|--no-install-workspace`.
    for stage in builders:
        first_deps = next(
            (
                n
                for n, i in enumerate(stage.instructions)
                if i.keyword == "RUN"
                and re.search(r"\buv\s+sync\b", i.args)
                and re.search(r"--no-install-(project|workspace)\b", i.args)
            ),
            None,
        )
        first_code = next(
            (
                n
                for n, i in enumerate(stage.instructions)
                if i.keyword in ("COPY", "ADD")
                and any(is_code(src) for src in copy_sources(i.args))
            ),
            None,
        )
        if first_code is not None and (first_deps is None or first_code < first_deps):
            line = stage.instructions[first_code].line
            problems.append(
                f"line {line}: source code is copied before the dependency layer; first "
                "COPY pyproject.toml + uv.lock and RUN uv sync --frozen --no-install-workspace, "
                "then copy libs/ and services/<name>/"
            )
            break

    for i in final.instructions:
        if i.keyword == "RUN" and re.search(r"\b(apt-get|apk)\b.*\binstall\b", i.args):
            tools = [t for t in BUILD_TOOLS if re.search(rf"(^|\s){re.escape(t)}(\s|$|=)", i.args)]
            if tools:
                problems.append(
                    f"line {i.line}: no build tools in the final stage ({', '.join(tools)})"
                )
        if re.search(r"astral-sh/uv|pip3?\s+install\s+[^\n]*\buv\b", i.args):
            problems.append(f"line {i.line}: uv belongs in the builder stage, not the final image")

    users = [i for i in final.instructions if i.keyword == "USER"]
    if not users or users[-1].args.split(":")[0] in ("root", "0"):
        problems.append("add a non-root USER (e.g. `USER 10001`) to the final stage")

    commands = [i for i in final.instructions if i.keyword in ("CMD", "ENTRYPOINT")]
    argv = [part for i in commands for part in command_argv(i.args)]
    joined = " ".join(argv)
    if not re.search(rf"(^|/|\s)python(3(\.11)?)?\s+-m\s+{re.escape(service)}(\s|$)", joined):
        problems.append(
            f'run the service with CMD ["python", "-m", "{service}"] (found: {joined!r})'
        )

    if listens:
        checks = [i for i in final.instructions if i.keyword == "HEALTHCHECK"]
        if not checks or checks[-1].args.strip().upper() == "NONE":
            problems.append("add a HEALTHCHECK that requests /healthz on the service's HTTP port")
        elif "healthz" not in checks[-1].args:
            problems.append("the HEALTHCHECK should request /healthz")
    return problems
