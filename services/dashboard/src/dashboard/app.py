"""Composition root: settings → state, hub, Kafka feed, viewer access → the Starlette app.

Routes (all under /dashboard/ except the probes, so nginx passes paths through unchanged):
`GET /dashboard/` the page (401 and a login form without a credential), `POST
/dashboard/login` a viewer key for a session cookie, `GET /dashboard/stream` the SSE stream
(`views=`, `symbols=`), `GET /dashboard/api/snapshot`, `GET|POST /dashboard/api/portfolio`,
`/dashboard/static/…` and `/dashboard/vendor/…` the page's files; `/healthz`, `/readyz`,
`/metrics`. A credential is an `X-API-Key` (or `Authorization: Bearer`) viewer key, or the
session cookie.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import orjson
import yaml
from pydantic import ValidationError
from servicekit import metrics
from servicekit.clock import Clock, SystemClock
from servicekit.settings import KafkaSettings, SettingsError, load_settings
from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from dashboard.access import COOKIE, ViewerAccess
from dashboard.feed import KafkaFeed
from dashboard.settings import DashboardSettings
from dashboard.stream import Hub
from dashboard.views import DashboardState, Portfolio, Position, StateConfig, Subscription

log = logging.getLogger(__name__)

SERVICE = "dashboard"
WEB_FILES = ("index.html", "login.html", "vendor/lightweight-charts.mjs", "vendor/uPlot.esm.js")
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]


def _json(status: int, document: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(document), status_code=status, media_type="application/json", headers=headers
    )


def load_portfolio(path: Path) -> list[Position]:
    """Positions from YAML or JSON: a list, or {"positions": [...]}; raises ValueError."""
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    if isinstance(document, list):
        document = {"positions": document}
    try:
        return Portfolio.model_validate(document).positions
    except ValidationError as exc:
        raise ValueError(f"{path}: {exc}") from None


def check_web_dir(web_dir: Path) -> None:
    missing = [name for name in WEB_FILES if not (web_dir / name).is_file()]
    if missing:
        raise ValueError(
            f"DASHBOARD_WEB_DIR={web_dir} lacks {', '.join(missing)}: run `make dashboard-web`"
            " (npm ci, then copies the chart libraries into web/vendor)"
        )


class Dashboard:
    """The running parts, for the routes and for tests."""

    def __init__(
        self, settings: DashboardSettings, kafka: KafkaSettings, *, clock: Clock | None = None
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.state = DashboardState(
            StateConfig(
                candles_per_symbol=settings.candles_per_symbol,
                alerts_max=settings.alerts_max,
                negative_reviews_max=settings.negative_reviews_max,
                reviews_per_product_max=settings.reviews_per_product_max,
                correlation_windows=settings.correlation_window_list,
                stale_after_s=settings.stale_after_s,
            )
        )
        self.hub = Hub(
            self.state,
            clock=self.clock,
            interval_s=settings.coalesce_interval_s,
            heartbeat_s=settings.heartbeat_s,
            max_clients=settings.max_clients,
            max_keys=settings.client_queue_max_keys,
            stall_timeout_s=settings.client_stall_timeout_s,
            direct_writes=settings.direct_writes,
            send_buffer_bytes=settings.client_send_buffer_bytes,
            replay_frames=settings.replay_frames,
        )
        self.feed = KafkaFeed(
            kafka,
            topics={
                "candles": settings.candles_topic,
                "live": settings.live_candles_topic,
                "alerts": settings.alerts_topic,
                "reviews": settings.reviews_topic,
            },
            state=self.state,
            publish=self.hub.publish,
            clock=self.clock,
            lookback_s=settings.lookback_s,
        )
        self.access = ViewerAccess(
            settings.viewer_key_list,
            secret=(settings.session_secret.get_secret_value() if settings.session_secret else ""),
            ttl_s=settings.session_ttl_s,
        )
        self.portfolio_access = (
            ViewerAccess(settings.portfolio_key_list, ttl_s=1)
            if settings.portfolio_key_list
            else None
        )
        self.tasks: list[asyncio.Task[None]] = []

    def authorized(self, conn: HTTPConnection) -> bool:
        key = conn.headers.get("x-api-key")
        bearer = conn.headers.get("authorization", "")
        if not key and bearer.lower().startswith("bearer "):
            key = bearer[7:].strip()
        if key and self.access.key_ok(key):
            return True
        token = conn.cookies.get(COOKIE)
        return self.access.session_ok(token, now_s=self.clock.now().timestamp())

    async def run_feed(self) -> None:
        """The Kafka feed, started again after a failure (Kafka down: retried every 2 s)."""
        while True:
            try:
                await self.feed.start()
                await self.feed.run()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("Kafka feed failed; retrying in 2 s")
                with contextlib.suppress(Exception):
                    await self.feed.stop()
                await asyncio.sleep(2.0)

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        metrics.SERVICE_INFO.labels(SERVICE).set(1)
        self.tasks = [
            asyncio.create_task(self.run_feed(), name="feed"),
            asyncio.create_task(self.hub.run(), name="hub"),
        ]
        try:
            yield
        finally:
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            await self.feed.stop()


class StreamEndpoint:
    """Raw ASGI: headers, then the hub writes the body for as long as the client stays."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.d = dashboard

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        d = self.d
        conn = HTTPConnection(scope)
        if not d.authorized(conn):
            metrics.DASHBOARD_REJECTED_CLIENTS.labels("unauthorized").inc()
            await _json(401, {"detail": "a viewer credential is required"})(scope, receive, send)
            return
        try:
            sub = Subscription.parse(
                views=conn.query_params.get("views"), symbols=conn.query_params.get("symbols")
            )
        except ValueError as exc:
            await _json(400, {"detail": str(exc)})(scope, receive, send)
            return
        if len(d.hub.clients) >= d.settings.max_clients:
            metrics.DASHBOARD_REJECTED_CLIENTS.labels("too_many").inc()
            retry = str(d.settings.retry_after_s)
            await _json(
                503,
                {"detail": f"{d.settings.max_clients} clients connected; retry later"},
                {"Retry-After": retry},
            )(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-store"),
                    (b"x-accel-buffering", b"no"),  # nginx: pass each frame on at once
                ],
            }
        )
        # EventSource reconnects by itself; `retry:` sets its delay, 1 s.
        await send({"type": "http.response.body", "body": b"retry: 1000\n\n", "more_body": True})
        await d.hub.serve(sub, send, receive, last_event_id=conn.headers.get("last-event-id"))
        with contextlib.suppress(OSError):  # ended by the server: close the response cleanly
            await send({"type": "http.response.body", "body": b"", "more_body": False})


class Guarded:
    """An ASGI app reachable only with a viewer credential."""

    def __init__(self, dashboard: Dashboard, app: ASGIApp) -> None:
        self.d = dashboard
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not self.d.authorized(HTTPConnection(scope)):
            await _json(401, {"detail": "a viewer credential is required"})(scope, receive, send)
            return
        await self.app(scope, receive, send)


class Router:
    """The stream bypasses Starlette's middleware (two wrappers around every `send` of every
    frame, measured in bench/dashboard); everything else goes through the Starlette app."""

    def __init__(self, stream: StreamEndpoint, app: Starlette) -> None:
        self.stream = stream
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/dashboard/stream":
            await self.stream(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def create_app(dashboard: Dashboard) -> Any:
    """The ASGI app: the stream route, then Starlette for the rest (lifespan included)."""
    starlette = create_starlette(dashboard)
    return Router(StreamEndpoint(dashboard), starlette)


def create_starlette(dashboard: Dashboard) -> Starlette:
    d = dashboard
    s = d.settings
    web = s.web_dir

    def login_page(status: int) -> Response:
        return FileResponse(web / "login.html", status_code=status, media_type="text/html")

    async def page(request: Request) -> Response:
        if not d.authorized(request):
            return login_page(401)
        return FileResponse(web / "index.html", media_type="text/html")

    async def login(request: Request) -> Response:
        # The login form (urlencoded, parsed here: no multipart dependency) or JSON {"key"}.
        content_type = request.headers.get("content-type", "")
        raw = await request.body()
        key: Any = None
        if content_type.startswith("application/json"):
            with contextlib.suppress(ValueError):
                body = orjson.loads(raw)
                key = body.get("key") if isinstance(body, dict) else None
        elif len(raw) <= 4096:
            key = next(iter(parse_qs(raw.decode("latin-1")).get("key", [])), None)
        if not isinstance(key, str) or not d.access.key_ok(key):
            log.info("dashboard login refused")
            return login_page(401)
        response = RedirectResponse("/dashboard/", status_code=303)
        response.set_cookie(
            COOKIE,
            d.access.issue(now_s=d.clock.now().timestamp()),
            max_age=d.access.ttl_s,
            path="/dashboard/",
            httponly=True,
            samesite="strict",
            secure=request.headers.get("x-forwarded-proto") == "https",
        )
        return response

    async def logout(_request: Request) -> Response:
        response = RedirectResponse("/dashboard/", status_code=303)
        response.delete_cookie(COOKIE, path="/dashboard/")
        return response

    async def snapshot(request: Request) -> Response:
        if not d.authorized(request):
            return _json(401, {"detail": "a viewer credential is required"})
        try:
            sub = Subscription.parse(
                views=request.query_params.get("views"),
                symbols=request.query_params.get("symbols"),
            )
        except ValueError as exc:
            return _json(400, {"detail": str(exc)})
        return _json(200, d.state.snapshot(sub, now_s=d.clock.monotonic()))

    async def portfolio(request: Request) -> Response:
        if request.method == "GET":
            if not d.authorized(request):
                return _json(401, {"detail": "a viewer credential is required"})
            return _json(200, d.state.portfolio())
        key = request.headers.get("x-api-key")
        if d.portfolio_access is None:
            return _json(403, {"detail": "portfolio changes are off (DASHBOARD_PORTFOLIO_KEYS)"})
        if not d.portfolio_access.key_ok(key):
            return _json(401, {"detail": "a portfolio key (X-API-Key) is required"})
        try:
            document = orjson.loads(await request.body())
            if isinstance(document, list):
                document = {"positions": document}
            positions = Portfolio.model_validate(document).positions
        except (orjson.JSONDecodeError, ValidationError) as exc:
            return _json(400, {"detail": f"invalid portfolio: {exc}"})
        d.hub.publish(d.state.set_positions(positions))
        return _json(200, d.state.portfolio())

    async def healthz(_request: Request) -> Response:
        dead = [t.get_name() for t in d.tasks if t.done()]
        if dead:
            return _json(503, {"status": "fail", "detail": f"stopped: {', '.join(dead)}"})
        return _json(200, {"status": "ok", "clients": len(d.hub.clients)})

    async def readyz(_request: Request) -> Response:
        if not d.feed.caught_up.is_set():
            return _json(503, {"status": "fail", "detail": "rebuilding recent state"})
        return _json(200, {"status": "ok"})

    async def metrics_route(_request: Request) -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    async def to_page(_request: Request) -> Response:
        return RedirectResponse("/dashboard/", status_code=308)

    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_route),
        Route("/dashboard", to_page),
        Route("/dashboard/", page),
        Route("/dashboard/login", login, methods=["POST"]),
        Route("/dashboard/logout", logout, methods=["POST"]),
        Route("/dashboard/stream", StreamEndpoint(d)),  # reached only through Router
        Route("/dashboard/api/snapshot", snapshot),
        Route("/dashboard/api/portfolio", portfolio, methods=["GET", "POST"]),
        Mount("/dashboard/static", Guarded(d, StaticFiles(directory=web / "src"))),
        Mount("/dashboard/vendor", Guarded(d, StaticFiles(directory=web / "vendor"))),
    ]
    return Starlette(routes=routes, lifespan=d.lifespan)


def build(clock: Clock | None = None) -> tuple[Any, Dashboard]:
    """Settings from the environment (a bad one exits naming it), then the app."""
    settings = load_settings(DashboardSettings)
    kafka = load_settings(KafkaSettings)
    try:
        check_web_dir(settings.web_dir)
    except ValueError as exc:
        print(f"invalid settings for DashboardSettings:\n  {exc}", file=sys.stderr)
        raise SettingsError(2) from exc
    dashboard = Dashboard(settings, kafka, clock=clock)
    if settings.portfolio_file is not None:
        try:
            positions = load_portfolio(settings.portfolio_file)
        except ValueError as exc:
            print(
                f"invalid settings for DashboardSettings:\n  DASHBOARD_PORTFOLIO_FILE: {exc}",
                file=sys.stderr,
            )
            raise SettingsError(2) from exc
        dashboard.state.set_positions(positions)
    return create_app(dashboard), dashboard
