"""Log configuration for the gateway's entry points: plain text or JSON lines."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

__all__ = ["EVENT_FIELDS", "JsonFormatter", "TextFormatter", "configure_logging"]

# `extra=` fields that lines about an event carry (see `event_log_extra`).
EVENT_FIELDS = ("event_id", "route", "flow_run_id", "sender_event_id", "replay")
# Attributes every LogRecord has; anything else came in through `extra=`.
_RECORD_ATTRIBUTES = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__
) | {"message", "asctime", "taskName", "color_message"}


class JsonFormatter(logging.Formatter):
    """Format each record as one JSON object with its `extra=` fields at top level."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in record.__dict__.items():
            if name not in _RECORD_ATTRIBUTES and not name.startswith("_"):
                data[name] = value
        if record.exc_info:
            data["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Format records as text, appending the event fields a record carries."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = [
            f"{name}={getattr(record, name)}"
            for name in EVENT_FIELDS
            if getattr(record, name, None) is not None
        ]
        if not fields:
            return line
        head, newline, rest = line.partition("\n")
        return f"{head} [{' '.join(fields)}]{newline}{rest}"


def configure_logging(level: str = "INFO", log_format: str = "text") -> None:
    """Send the root logger's records to stderr as text or JSON lines.

    Raises:
        ValueError: `log_format` is neither "text" nor "json".
    """
    if log_format not in ("text", "json"):
        raise ValueError(f"log format {log_format!r} is invalid; use 'text' or 'json'")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Alembic reports every migration step at INFO on each start; warnings stay.
    logging.getLogger("alembic").setLevel(max(root.level, logging.WARNING))
