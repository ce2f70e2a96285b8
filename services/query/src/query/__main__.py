"""`python -m query`: the read-only SQL endpoint on QUERY_HTTP_HOST:QUERY_HTTP_PORT."""

from __future__ import annotations

import argparse

import uvicorn
from servicekit.logging import configure_logging

from query.app import build_app


def main() -> None:
    # No options: settings come from QUERY_* variables; --help says so.
    argparse.ArgumentParser(
        prog="python -m query",
        description=__doc__,
        epilog="Settings: QUERY_*, S3_* and AWS_* environment variables "
        "(services/query/README.md).",
    ).parse_args()
    app, settings = build_app()
    configure_logging("query", level=settings.log_level, json=settings.log_json)
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),
        timeout_keep_alive=int(settings.http_keepalive_s),
    )


if __name__ == "__main__":
    main()
