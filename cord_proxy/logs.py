"""Structured (JSON lines) logging.

Secrets never reach a log: nothing logs headers or keys, and `RedactFilter` cleans every
text of a record (its message, fields and traceback) with `redact.excerpt`.

Every line logged while a request is served carries its ``request_id``: the HTTP face sets
`REQUEST_ID` for the request (cord_proxy/api/request_id.py, the ``x-request-id`` header's
value), the tasks it starts inherit it, and `JsonFormatter` writes it. A record that names
its own ``request_id`` keeps it.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from typing import Any

from cord_proxy.redact import clean, excerpt

LOG_FIELD_LIMIT = 2000
TRACEBACK_LIMIT = 8000
RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
REQUEST_ID: ContextVar[str | None] = ContextVar("cord_request_id", default=None)
"""The id of the request being served in this context; None outside any request."""


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        request_id = REQUEST_ID.get()
        if request_id is not None:
            entry["request_id"] = request_id
        entry.update({k: v for k, v in record.__dict__.items() if k not in RESERVED})
        if record.exc_text:
            entry["exception"] = record.exc_text
        elif record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class RedactFilter(logging.Filter):
    """Cleans a record in place: no endpoint, key or configured secret leaves in a log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = excerpt(record.getMessage(), LOG_FIELD_LIMIT)
        record.args = None
        for key, value in list(record.__dict__.items()):
            if key not in RESERVED:
                record.__dict__[key] = clean(value, LOG_FIELD_LIMIT)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = _clean_lines(record.exc_text)
        return True


def _clean_lines(text: str) -> str:
    lines = [excerpt(line, LOG_FIELD_LIMIT) for line in text.splitlines()]
    return "\n".join(lines)[:TRACEBACK_LIMIT]


def configure_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactFilter())
    root = logging.getLogger("cord_proxy")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
