"""`python -m ingest [serve|migrate|create-key NAME [SCOPE...]]` — serve is the default."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from types import FrameType

from servicekit.logging import configure_logging
from servicekit.settings import load_settings
from servicekit.tracing import TracingSettings

from ingest.auth import ALL_SCOPES, Scope, hash_key, new_key
from ingest.listeners import SocketInUseError, UnixListener, bind_unix
from ingest.migrate import migrate, seed_dev_key
from ingest.repository import Database
from ingest.settings import IngestSettings

log = logging.getLogger("ingest")


def _serve(settings: IngestSettings) -> None:
    import uvicorn

    try:
        asyncio.run(seed_dev_key(settings))
    except Exception as exc:  # the API still starts; requests answer 503 until PG is back
        log.warning("could not seed the dev API key (run `migrate`?): %s", exc)
    options: dict[str, object] = {}
    try:
        import uvloop  # noqa: F401

        options["loop"] = "uvloop"
    except ImportError:
        pass
    try:
        import httptools  # noqa: F401

        # uvicorn's httptools protocol, with one write per response (see http_protocol.py).
        options["http"] = "ingest.http_protocol:CoalescingHttpToolsProtocol"
    except ImportError:
        pass
    config = uvicorn.Config(
        "ingest.app:build_app",
        factory=True,
        host=settings.http_host,
        port=settings.http_port,
        workers=settings.workers,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),
        timeout_keep_alive=int(settings.http_keepalive_s),
        backlog=2048,
        **options,  # type: ignore[arg-type]  # only loop/http keys are set
    )
    # TCP always (direct callers, probes, Kubernetes' Service); a unix socket beside it when
    # INGEST_HTTP_UDS is set, for an nginx on the same host (see listeners.py).
    sockets = [config.bind_socket()]
    unix = None
    if settings.http_uds is not None:
        try:
            unix = bind_unix(settings.http_uds)
        except (SocketInUseError, OSError) as exc:
            log.error("INGEST_HTTP_UDS: cannot listen on %s: %s", settings.http_uds, exc)
            sys.exit(2)
        sockets.append(unix.sock)
        log.info("listening on unix socket %s", settings.http_uds)
    try:
        if settings.workers > 1:
            from uvicorn.supervisors import Multiprocess

            Multiprocess(config, sockets=sockets).run()
        else:
            if unix is not None:
                # uvicorn's Server re-raises the SIGTERM it caught once it has shut down,
                # under the handler found at start: this one, so the socket file goes too.
                signal.signal(signal.SIGTERM, _exit_on(unix))
            uvicorn.Server(config).run(sockets=sockets)
    finally:
        if unix is not None:
            unix.close()


def _exit_on(unix: UnixListener) -> Callable[[int, FrameType | None], None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        unix.close()
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)

    return handler


async def _create_key(settings: IngestSettings, name: str, scopes: list[str]) -> str:
    from ingest.app import _db_config

    key = new_key()
    db = Database(_db_config(settings))
    await db.start()
    try:
        await db.upsert_api_key(name=name, key_hash=hash_key(key), scopes=scopes)
    finally:
        await db.close()
    return key


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ingest")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the HTTP API under uvicorn (default)")
    sub.add_parser("migrate", help="apply Alembic migrations and seed PULSE_API_KEY")
    create = sub.add_parser("create-key", help="create (or rotate) a named API key; prints it")
    create.add_argument("name")
    create.add_argument("scopes", nargs="*", help=", ".join(s.value for s in Scope))
    args = parser.parse_args(argv)

    settings = load_settings(IngestSettings)
    configure_logging("ingest", level=settings.log_level, json=settings.log_json)
    if args.command == "migrate":
        migrate(settings)
    elif args.command == "create-key":
        scopes = args.scopes or sorted(s.value for s in ALL_SCOPES)
        unknown = set(scopes) - {s.value for s in Scope}
        if unknown:
            parser.error(f"unknown scopes: {', '.join(sorted(unknown))}")
        print(asyncio.run(_create_key(settings, args.name, scopes)))
    else:
        # Each worker sets tracing up in `build_app`; a bad OTEL_* value stops here first,
        # naming the variable, rather than in every worker.
        load_settings(TracingSettings)
        _serve(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
