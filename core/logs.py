"""Structured (JSON lines) logging for every process.

Log ids, never raw bodies, secrets or customer addresses: the formatter also masks anything
that looks like an email address or a bearer/xox token in case a library logs one.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from datetime import UTC, datetime

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
_TOKEN = re.compile(r"(xox[abpr]-[\w-]+|phx_[\w-]+|Bearer\s+[\w.-]+)")


def redact(text: str) -> str:
    return _TOKEN.sub("[secret]", _EMAIL.sub("[email]", text))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
            "process": record.process,
        }
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry)


def configure(level: str | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level or os.environ.get("TICKETWIRE_LOG_LEVEL", "INFO"))
    for noisy in ("httpx", "httpcore", "urllib3", "slack_sdk", "github", "dramatiq"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
