"""One cdc_processor worker on benchmark topics, as a process of its own (scaling.py starts
several): the real app and agents, routes and outputs redirected like run.py's in-process runs.

  python bench/cdc_processor/_worker.py '{"sources": {route: topic}, "outputs": {topic: topic}}'

Settings from CDC_* and KAFKA_BOOTSTRAP_SERVERS, as `python -m cdc_processor`.
"""

from __future__ import annotations

import asyncio
import json
import sys

import faust
from cdc_processor.app import SERVICE, create_app, create_topics
from cdc_processor.settings import CdcSettings
from servicekit.logging import configure_logging
from servicekit.settings import KafkaSettings, load_settings


def main() -> None:
    routes = json.loads(sys.argv[1])
    settings = load_settings(CdcSettings)
    configure_logging(SERVICE, level=settings.log_level, json=settings.log_json)
    (settings.data_dir / settings.app_id).mkdir(parents=True, exist_ok=True)
    kafka = load_settings(KafkaSettings)
    processor = create_app(settings, kafka, sources=routes["sources"], outputs=routes["outputs"])
    asyncio.run(create_topics(processor, kafka))  # as `python -m cdc_processor` does
    faust.Worker(
        processor.app,
        loglevel=settings.log_level,
        override_logging=False,
        redirect_stdouts=False,
    ).execute_from_commandline()


if __name__ == "__main__":
    main()
