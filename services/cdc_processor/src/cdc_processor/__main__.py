"""`python -m cdc_processor`: run the Faust worker (SIGTERM stops it cleanly)."""

from __future__ import annotations

import argparse
import asyncio
import logging

import faust
import mode.loop
from servicekit import tracing
from servicekit.interpreter import tune_gc
from servicekit.kafka_auth import check_kafka_access
from servicekit.logging import configure_logging
from servicekit.settings import KafkaSettings, load_settings

from cdc_processor.app import SERVICE, create_app, create_topics
from cdc_processor.settings import CdcSettings

log = logging.getLogger(__name__)


def use_event_loop(name: str) -> str:
    """Install the event loop `CDC_EVENT_LOOP` names; asyncio when uvloop is not installed."""
    if name == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            log.warning("CDC_EVENT_LOOP=uvloop but uvloop is not installed: using asyncio")
            return "asyncio"
        mode.loop.use("uvloop")
    return name


def main() -> None:
    # No options: settings come from CDC_* (and KAFKA_*) variables. --help says so, and in an
    # image proves the module imports.
    argparse.ArgumentParser(
        prog="python -m cdc_processor",
        description=__doc__,
        epilog="Settings: CDC_* and KAFKA_BOOTSTRAP_SERVERS environment variables "
        "(services/cdc_processor/README.md).",
    ).parse_args()
    settings = load_settings(CdcSettings)
    kafka = load_settings(KafkaSettings)
    configure_logging(SERVICE, level=settings.log_level, json=settings.log_json)
    tracing.configure(SERVICE)  # before create_app: the agents pick their handlers by it
    log.info("event loop: %s", use_event_loop(settings.event_loop))
    if settings.uses_dev_pseudonym_key:
        log.warning("CDC_PSEUDONYM_KEY is not set: using the public DEV-ONLY key")
    # Before Faust starts: a refused credential or certificate stops here with a message that
    # names the setting, where Faust would only log and retry.
    asyncio.run(check_kafka_access(kafka))
    (settings.data_dir / settings.app_id).mkdir(parents=True, exist_ok=True)
    processor = create_app(settings, kafka)
    asyncio.run(create_topics(processor, kafka))
    tune_gc()
    worker = faust.Worker(
        processor.app,
        loglevel=settings.log_level,
        override_logging=False,
        redirect_stdouts=False,
    )
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
