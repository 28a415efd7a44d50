"""`LOG_FORMAT=json`: each log record as one JSON object on one line, for Loki, ELK and the like.

The message is the plain line as operators grep it (`[RX] call=CA… fps_in=50 …`); the figures a
record carries (`extra=`, e.g. `SecondSample.rx_fields()`) become fields of their own, so a log
shipper can filter and graph `fps_in` or `write_ms` without parsing text.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

# Every attribute a plain LogRecord has: what is not among them came in through `extra=`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Format a record as `{"time", "level", "logger", "message", ...extra, "exc_info"?}`."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in out:
                out[key] = value
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack_info"] = self.formatStack(record.stack_info)
        # One line whatever the text holds (newlines are escaped); Hebrew and emoji as they are.
        return json.dumps(out, ensure_ascii=False, default=str)
