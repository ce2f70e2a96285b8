"""JSON logs on stderr, one object a line, with the service name and any `extra=` fields.

Repeated warnings and errors are rate-limited (`RepeatFilter`): during a broker outage
aiokafka and Faust log the same failure per connection attempt and per partition — about
4,000 ERROR lines a second from one cdc_processor (issue 25). Each kind of line (logger,
level, message template) passes a few times per interval; the rest are counted, and the next
one that passes says how many were held back, so an outage reads as a few lines while it
lasts and the first line after it.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                document[key] = value
        if record.exc_info:
            document["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(document, default=str).decode()


class RepeatFilter(logging.Filter):
    """Let each kind of WARNING-or-worse line through `burst` times per `interval_s`.

    A kind is (logger, level, unformatted message), so "Unable connect to node %s" is one kind
    whatever the node. Held-back lines are counted and the next line of that kind to pass
    carries `suppressed=<count>` (and the text "[N similar suppressed]"). INFO and DEBUG lines
    always pass: they are not what floods, and start-up needs every one of them.
    """

    def __init__(
        self,
        *,
        burst: int = 3,
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.burst = burst
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()  # Faust's consumer thread logs too
        # kind -> [window start, lines passed in the window, lines held back since last pass]
        self._kinds: dict[tuple[str, int, str], list[float]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        kind = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        with self._lock:
            state = self._kinds.get(kind)
            if state is None or now - state[0] >= self.interval_s:
                held = 0 if state is None else int(state[2])
                if len(self._kinds) > 10_000:  # messages built with f-strings: stay bounded
                    self._kinds.clear()
                self._kinds[kind] = [now, 1, 0]
            elif state[1] < self.burst:
                state[1] += 1
                held, state[2] = int(state[2]), 0
            else:
                state[2] += 1
                return False
        if held:
            record.suppressed = held
            record.msg = f"{record.msg} [{held} similar suppressed]"
        return True


def configure_logging(service: str, *, level: str = "INFO", json: bool = True) -> None:
    """Route the root logger to stderr, repeated warnings rate-limited; idempotent."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RepeatFilter())
    if json:
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiokafka logs every rebalance step at INFO; keep it to warnings.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
