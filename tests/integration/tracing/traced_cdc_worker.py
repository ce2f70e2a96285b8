"""The cdc_processor's agents on one test's own topics: `python traced_cdc_worker.py`.

What `python -m cdc_processor` runs (settings from CDC_*/KAFKA_*, tracing from OTEL_*), with
the contract topics swapped the way the benchmark swaps them (`create_app`'s `sources` and
`outputs`): TRACE_IT_SOURCES maps route names to the private Debezium connector's topics,
TRACE_IT_OUTPUTS contract output topics to the test's own.
"""

from __future__ import annotations

import json
import os

import faust
from cdc_processor.app import SERVICE, create_app
from cdc_processor.settings import CdcSettings
from servicekit import tracing
from servicekit.logging import configure_logging
from servicekit.settings import KafkaSettings, load_settings


def main() -> None:
    settings = load_settings(CdcSettings)
    kafka = load_settings(KafkaSettings)
    configure_logging(SERVICE, level=settings.log_level, json=settings.log_json)
    tracing.configure(SERVICE)
    sources = json.loads(os.environ["TRACE_IT_SOURCES"])
    # the repartition topic is named after the app id: route it too, or the tick path stops
    sources["ticks-by-symbol"] = f"{settings.app_id}-ticks-by-symbol"
    (settings.data_dir / settings.app_id).mkdir(parents=True, exist_ok=True)
    processor = create_app(
        settings, kafka, sources=sources, outputs=json.loads(os.environ["TRACE_IT_OUTPUTS"])
    )
    faust.Worker(
        processor.app, loglevel=settings.log_level, override_logging=False, redirect_stdouts=False
    ).execute_from_commandline()


if __name__ == "__main__":
    main()
