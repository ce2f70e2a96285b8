"""NOTIFIER_* settings: the URL list, the secret, names of receivers, start-up refusals."""

from __future__ import annotations

import base64

import pytest
from notifier.main import build_receivers
from notifier.routing import RoutingError
from notifier.settings import NotifierSettings
from pydantic import ValidationError

SECRET = "whsec_" + base64.b64encode(bytes(32)).decode()


def test_urls_split_on_commas_before_a_scheme_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "NOTIFIER_URLS",
        "webhook+http://127.0.0.1:9/h, mailto://example.com?to=a@x.org,b@x.org,slack://T/B/C",
    )
    monkeypatch.setenv("NOTIFIER_WEBHOOK_SECRET", SECRET)
    settings = NotifierSettings()
    assert settings.urls == [
        "webhook+http://127.0.0.1:9/h",
        "mailto://example.com?to=a@x.org,b@x.org",
        "slack://T/B/C",
    ]
    assert settings.url_receiver_names() == ["webhook-1", "mailto-2", "slack-3"]


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({}, "set NOTIFIER_URLS or NOTIFIER_ROUTING_FILE"),
        ({"NOTIFIER_URLS": "webhook+http://h/x"}, "needs NOTIFIER_WEBHOOK_SECRET"),
        ({"NOTIFIER_URLS": "x://h", "NOTIFIER_WEBHOOK_SECRET": "abc"}, "whsec_"),
        ({"NOTIFIER_URLS": "x://h", "NOTIFIER_GROUP_WAIT_S": "60"}, "less than or equal to 10"),
    ],
)
def test_bad_settings_are_refused(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], reason: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError, match=reason):
        NotifierSettings()


def test_build_receivers_refuses_a_bad_routing_file_naming_the_line(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    routes = tmp_path / "routes.yaml"
    routes.write_text("route:\n  receivers: [nobody]\n")
    monkeypatch.setenv("NOTIFIER_ROUTING_FILE", str(routes))
    with pytest.raises(RoutingError, match=r"routes.yaml:2: unknown receiver 'nobody'"):
        build_receivers(NotifierSettings(), {})


def test_a_url_env_receiver_reads_its_url_from_the_environment(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        "receivers:\n  - name: team\n    url_env: TEAM_URL\nroute:\n  receivers: [team]\n"
    )
    monkeypatch.setenv("NOTIFIER_ROUTING_FILE", str(routes))
    with pytest.raises(ValueError, match="TEAM_URL is empty"):
        build_receivers(NotifierSettings(), {})
    wiring = build_receivers(NotifierSettings(), {"TEAM_URL": "json://127.0.0.1:9/x"})
    assert list(wiring.receivers) == ["team"]
