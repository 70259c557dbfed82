"""Structured logs: one JSON object per line, always naming the service.

Callers log an event name as the message and put facts in ``extra``::

    log.info("message.rejected", extra={"tenant": t, "reason": "duplicate"})
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import msgspec

# Attributes every LogRecord carries; anything else came from ``extra``.
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()
    | {"message", "asctime", "taskName"}
)
_encoder = msgspec.json.Encoder()


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str, instance: str) -> None:
        super().__init__()
        self._service = service
        self._instance = instance

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _iso(record.created),
            "level": record.levelname.lower(),
            "service": self._service,
            "instance": self._instance,
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return _encoder.encode(entry).decode()

    def formatException(self, ei: Any) -> str:
        return super().formatException(ei).replace("\n", "\\n")


def _iso(created: float) -> str:
    secs = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{secs}.{int(created % 1 * 1000):03d}Z"


def configure(service: str, instance: str, level: str = "INFO") -> None:
    """Route every logger to stderr as JSON lines. Called once by an entry point."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service, instance))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The NATS client logs every reconnect attempt at ERROR; our own
    # connection callbacks report those once, with context.
    logging.getLogger("nats").setLevel(logging.CRITICAL)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
