"""`python -m dashboard`: the live dashboard on DASHBOARD_HTTP_HOST:DASHBOARD_HTTP_PORT."""

from __future__ import annotations

import argparse
from types import FrameType

import uvicorn
from servicekit.logging import configure_logging

from dashboard.app import Dashboard, build


class Server(uvicorn.Server):
    """Ends every stream as soon as a shutdown signal arrives, so uvicorn's graceful wait
    finds the responses complete instead of cancelling each stream's task."""

    def __init__(self, config: uvicorn.Config, dashboard: Dashboard) -> None:
        super().__init__(config)
        self.dashboard = dashboard

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.dashboard.hub.close_all()
        super().handle_exit(sig, frame)


def main() -> None:
    # No options: settings come from DASHBOARD_* (and KAFKA_*) variables; --help says so
    # before any setting is read.
    argparse.ArgumentParser(
        prog="python -m dashboard",
        description=__doc__,
        epilog="Settings: DASHBOARD_* and KAFKA_* environment variables "
        "(services/dashboard/README.md).",
    ).parse_args()
    app, dashboard = build()
    settings = dashboard.settings
    configure_logging("dashboard", level=settings.log_level, json=settings.log_json)
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        http="httptools",
        log_config=None,
        access_log=False,
        # Streams never end by themselves: waiting `shutdown_grace_s` for them would only
        # delay a restart; browsers reconnect and get a fresh snapshot.
        timeout_graceful_shutdown=1,
        timeout_keep_alive=int(settings.http_keepalive_s),
    )
    Server(config, dashboard).run()


if __name__ == "__main__":
    main()
