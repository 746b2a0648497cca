"""Structured JSON logs; every line carries the request id and conversation id of its context."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
conversation_id_var: ContextVar[str | None] = ContextVar("conversation_id", default=None)

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, ids and any `extra=` fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Render the record as JSON."""
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = request_id_var.get()
        conversation_id = conversation_id_var.get()
        if request_id:
            out["request_id"] = request_id
        if conversation_id:
            out["conversation_id"] = conversation_id
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(*, level: str = "INFO", json_lines: bool = True) -> Callable[[], None]:
    """Send the service's logs to stderr (JSON lines unless `json_lines` is off); returns an undo."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if json_lines else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    root = logging.getLogger()
    previous_level = root.level
    access = logging.getLogger("uvicorn.access")
    previous_access = access.disabled
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn's access log duplicates ours (which has ids and latency).
    access.disabled = True

    def restore() -> None:
        root.removeHandler(handler)
        root.setLevel(previous_level)
        access.disabled = previous_access

    return restore
