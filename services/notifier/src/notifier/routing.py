"""The routing tree, receivers, grouping and inhibition rules, read from YAML. Pure.

A route matches an alert when every one of its `match` labels equals one of the listed
values (`match_re`: a full regular-expression match). Children are tried in order; the first
that matches wins unless it says `continue: true`, in which case the next ones are tried too.
When no child matches, the route itself applies. Receivers and grouping settings are inherited
from the parent unless a route sets its own. A bad file raises `RoutingError` naming the line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from notifier.labels import LABEL_NAMES

RECEIVER_NAME = r"^[a-z0-9][a-z0-9_.-]{0,62}$"


class RoutingError(ValueError):
    """A routing file that cannot be used; the message names the file, line and reason."""


def _check_label_names(names: Sequence[str]) -> None:
    unknown = sorted(set(names) - LABEL_NAMES)
    if unknown:
        raise ValueError(f"unknown label(s) {unknown}; known: {sorted(LABEL_NAMES)}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ReceiverConfig(_Model):
    """One destination. `url` inline (local files) or `url_env`: the environment variable
    holding it (Kubernetes: from a Secret), since receiver URLs carry tokens."""

    name: Annotated[str, Field(pattern=RECEIVER_NAME)]
    url: str | None = None
    url_env: str | None = None
    rate_per_s: Annotated[float, Field(gt=0)] = 10.0
    burst: Annotated[int, Field(ge=1)] = 10
    concurrency: Annotated[int, Field(ge=1, le=64)] = 4
    max_attempts: Annotated[int, Field(ge=1)] = 12
    max_age_s: Annotated[float, Field(gt=0)] = 6 * 3600.0
    timeout_s: Annotated[float, Field(gt=0)] = 10.0


class RouteConfig(_Model):
    match: dict[str, str | list[str]] = Field(default_factory=dict)
    match_re: dict[str, str] = Field(default_factory=dict)
    receivers: list[str] | None = None
    continue_: bool = Field(default=False, alias="continue")
    group_by: list[str] | None = None
    group_wait_s: Annotated[float, Field(ge=0)] | None = None
    group_interval_s: Annotated[float, Field(ge=0)] | None = None
    repeat_interval_s: Annotated[float, Field(gt=0)] | None = None
    routes: list[RouteConfig] = Field(default_factory=list)

    @field_validator("match", "match_re")
    @classmethod
    def _known_labels(cls, value: dict[str, Any]) -> dict[str, Any]:
        _check_label_names(list(value))
        return value

    @field_validator("match_re")
    @classmethod
    def _compiles(cls, value: dict[str, str]) -> dict[str, str]:
        for name, pattern in value.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"match_re.{name}: {exc}") from exc
        return value

    @field_validator("group_by")
    @classmethod
    def _known_group_labels(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            _check_label_names(value)
        return value


class InhibitRule(_Model):
    """While a `source` alert is recent (`duration_s`), `target` alerts with the same `equal`
    labels are held back: pending ones are dropped, new ones are not queued."""

    source: dict[str, str]
    target: dict[str, str]
    equal: list[str] = Field(default_factory=lambda: ["subject"])
    duration_s: Annotated[float, Field(gt=0)] = 900.0

    @field_validator("source", "target")
    @classmethod
    def _known_labels(cls, value: dict[str, str]) -> dict[str, str]:
        _check_label_names(list(value))
        return value

    @field_validator("equal")
    @classmethod
    def _known_equal(cls, value: list[str]) -> list[str]:
        _check_label_names(value)
        return value


class RoutingConfig(_Model):
    receivers: list[ReceiverConfig] = Field(default_factory=list)
    route: RouteConfig
    inhibit_rules: list[InhibitRule] = Field(default_factory=list)


ROOT_DEFAULTS = {
    "group_by": ["kind", "subject"],
    "group_wait_s": 2.0,
    "group_interval_s": 10.0,
    "repeat_interval_s": 4 * 3600.0,
}
"""The simple case's grouping (NOTIFIER_URLS alone): a single alert waits 2 s at most."""

DEFAULT_INHIBIT = InhibitRule(
    source={"kind": "negative_burst"}, target={"kind": "negative_review"}, equal=["subject"]
)


@dataclass(frozen=True, slots=True)
class Grouping:
    group_by: tuple[str, ...]
    group_wait_s: float
    group_interval_s: float
    repeat_interval_s: float


@dataclass(slots=True)  # not frozen: one per receiver per alert, and frozen __init__ is slow
class Destination:
    """Where one alert goes: a receiver, the group it joins there, and that group's timing."""

    receiver: str
    group_key: str
    group_labels: Mapping[str, str]
    grouping: Grouping


@dataclass(frozen=True, slots=True)
class _Node:
    path: str
    match: Mapping[str, frozenset[str]]
    match_re: Mapping[str, re.Pattern[str]]
    receivers: tuple[str, ...]
    grouping: Grouping
    continue_: bool
    children: tuple[_Node, ...]
    sorted_group_by: tuple[str, ...] = ()  # group_key's order

    def matches(self, labels: Mapping[str, str]) -> bool:
        if not self.match and not self.match_re:
            return True  # the root, usually
        return all(labels.get(k) in values for k, values in self.match.items()) and all(
            (value := labels.get(k)) is not None and pattern.fullmatch(value)
            for k, pattern in self.match_re.items()
        )


def _compile(route: RouteConfig, parent: _Node | None, path: str) -> _Node:
    def pick(name: str) -> Any:
        own = getattr(route, name)
        if own is not None:
            return own
        return getattr(parent.grouping, name) if parent else ROOT_DEFAULTS[name]

    grouping = Grouping(
        group_by=tuple(pick("group_by")),
        group_wait_s=float(pick("group_wait_s")),
        group_interval_s=float(pick("group_interval_s")),
        repeat_interval_s=float(pick("repeat_interval_s")),
    )
    receivers = tuple(route.receivers) if route.receivers is not None else ()
    if not receivers and parent is not None:
        receivers = parent.receivers
    node = _Node(
        path=path,
        match={k: frozenset([v] if isinstance(v, str) else v) for k, v in route.match.items()},
        match_re={k: re.compile(v) for k, v in route.match_re.items()},
        receivers=receivers,
        grouping=grouping,
        continue_=route.continue_,
        children=(),
        sorted_group_by=tuple(sorted(set(grouping.group_by))),
    )
    children = tuple(_compile(child, node, f"{path}.{i}") for i, child in enumerate(route.routes))
    return dataclasses.replace(node, children=children)


def _matching(node: _Node, labels: Mapping[str, str]) -> list[_Node]:
    if not node.matches(labels):
        return []
    found: list[_Node] = []
    for child in node.children:
        hit = _matching(child, labels)
        if hit:
            found.extend(hit)
            if not child.continue_:
                break
    return found or [node]


def group_key(receiver: str, route_path: str, group_labels: Mapping[str, str]) -> str:
    """Stable across restarts and replicas: the route, the receiver, the grouped values."""
    text = "\x1f".join(
        [receiver, route_path, *(f"{k}={v}" for k, v in sorted(group_labels.items()))]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class Router:
    """Routes an alert's labels to destinations; inhibition rules travel with it."""

    def __init__(self, config: RoutingConfig, *, receiver_names: Sequence[str]) -> None:
        self.config = config
        self.root = _compile(config.route, None, "root")
        self.inhibit_rules = tuple(config.inhibit_rules)
        self.receiver_names = tuple(receiver_names)

    def destinations(self, labels: Mapping[str, str]) -> list[Destination]:
        out: dict[str, Destination] = {}
        for node in _matching(self.root, labels):
            group_labels = {k: labels.get(k, "") for k in node.grouping.group_by}
            # group_key's text without the receiver, built once for all of the node's receivers
            grouped = "\x1f".join(
                [node.path, *(f"{k}={group_labels[k]}" for k in node.sorted_group_by)]
            )
            for receiver in node.receivers:
                # One alert joins one group per receiver: the first route to name it wins.
                if receiver not in out:
                    key = hashlib.sha256(f"{receiver}\x1f{grouped}".encode()).hexdigest()[:24]
                    out[receiver] = Destination(receiver, key, group_labels, node.grouping)
        return list(out.values())


# --- loading, with line numbers ---------------------------------------------------------


def _to_python(node: yaml.Node, path: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = yaml.safe_load(yaml.serialize(key_node))
            lines[(*path, key)] = key_node.start_mark.line + 1
            result[key] = _to_python(value_node, (*path, key), lines)
            lines[(*path, key)] = key_node.start_mark.line + 1
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, (*path, i), lines) for i, item in enumerate(node.value)]
    return yaml.safe_load(yaml.serialize(node))


def _line_for(loc: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> int:
    # pydantic reports the field name; YAML spells `continue` as such.
    loc = tuple("continue" if part == "continue_" else part for part in loc)
    while loc and loc not in lines:
        loc = loc[:-1]
    return lines.get(loc, 1)


def parse_routing(text: str, *, source: str, receiver_names: Sequence[str]) -> Router:
    """Parse and check a routing document; every failure names `source`, a line and why."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc)
        raise RoutingError(f"{source}:{line}: not valid YAML: {problem}") from exc
    if node is None:
        raise RoutingError(f"{source}:1: empty routing file (a `route:` is required)")
    lines: dict[tuple[Any, ...], int] = {}
    document = _to_python(node, (), lines)
    if not isinstance(document, dict):
        raise RoutingError(f"{source}:1: the routing file must be a mapping")
    try:
        config = RoutingConfig.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first.get("loc", ()))
        where = ".".join(str(p) for p in loc)
        raise RoutingError(
            f"{source}:{_line_for(loc, lines)}: {where}: {first.get('msg', 'invalid')}"
        ) from exc
    known = {r.name for r in config.receivers} | set(receiver_names)
    for i, receiver in enumerate(config.receivers):
        if (receiver.url is None) == (receiver.url_env is None):
            line = _line_for(("receivers", i), lines)
            raise RoutingError(f"{source}:{line}: receiver {receiver.name!r} needs url or url_env")

    def check(route: RouteConfig, path: tuple[Any, ...]) -> None:
        for i, name in enumerate(route.receivers or []):
            if name not in known:
                line = _line_for((*path, "receivers", i), lines)
                raise RoutingError(
                    f"{source}:{line}: unknown receiver {name!r}; defined: {sorted(known)}"
                )
        for i, child in enumerate(route.routes):
            check(child, (*path, "routes", i))

    check(config.route, ("route",))
    if not config.route.receivers:
        line = _line_for(("route",), lines)
        raise RoutingError(f"{source}:{line}: the root route needs receivers (the fallback)")
    return Router(config, receiver_names=sorted(known))


def load_routing(path: Path, *, receiver_names: Sequence[str]) -> Router:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RoutingError(f"{path}: cannot read the routing file: {exc}") from exc
    return parse_routing(text, source=str(path), receiver_names=receiver_names)


def simple_router(receiver_names: Sequence[str]) -> Router:
    """NOTIFIER_URLS alone: every alert to every receiver, grouped by kind and subject."""
    config = RoutingConfig(
        route=RouteConfig(receivers=list(receiver_names)), inhibit_rules=[DEFAULT_INHIBIT]
    )
    return Router(config, receiver_names=receiver_names)
