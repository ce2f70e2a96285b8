"""`python -m dashboard`: the live dashboard on DASHBOARD_HTTP_HOST:DASHBOARD_HTTP_PORT."""

from __future__ import annotations

import uvicorn
from servicekit.logging import configure_logging

from dashboard.app import build


def main() -> None:
    app, dashboard = build()
    settings = dashboard.settings
    configure_logging("dashboard", level=settings.log_level, json=settings.log_json)
    uvicorn.run(
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


if __name__ == "__main__":
    main()
