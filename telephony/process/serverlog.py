"""What the WebSocket server logs about a stream's broken frames, said once, by the consumer.

uvicorn answers a text frame that is not UTF-8 by closing the socket with 1007, and logs the
decoding error with its traceback at ERROR on `uvicorn.error`, once per such frame, with no
call to tell it by. The consumer is told the close code and counts the frame as bad input of
the call (`not_utf8`), logged once with its reason and recorded on the call: the server's
own line is dropped here so that a hostile client cannot write tracebacks into the log.
"""

from __future__ import annotations

import logging

NOT_UTF8_MESSAGE = "Invalid UTF-8 sequence received from client."


class DropNotUtf8(logging.Filter):
    """Drop uvicorn's ERROR record (and traceback) for a text frame that is not UTF-8."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != NOT_UTF8_MESSAGE


def install() -> None:
    """Filter the server's loggers (once; uvicorn or not, it costs nothing)."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, DropNotUtf8) for f in logger.filters):
        logger.addFilter(DropNotUtf8())
