"""Logging of the long-running services: one JSON object per line for log collectors, or one
readable line for people at a terminal.

`configure_logging(service)` is called once where a service starts. FLEXFLEET_LOG_FORMAT=json
(the deployment sets it) gives lines such as

    {"ts": "2026-11-24T04:23:31.123Z", "level": "INFO", "service": "ingest",
     "logger": "services.ingest.worker", "message": "...", "partition": 3}

with every `extra={...}` field of the call as a member of its own, so collectors can filter on
them without parsing the message; anything else (or unset) gives the readable form. The level
comes from FLEXFLEET_LOG_LEVEL (default INFO). What commands print for people (rich tables,
typer.echo) goes to stdout and is not touched.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from flexfleet.domain.errors import DomainError

FORMAT_ENV = "FLEXFLEET_LOG_FORMAT"
LEVEL_ENV = "FLEXFLEET_LOG_LEVEL"

# Attributes every LogRecord has; anything else on a record came from `extra`.
# uvicorn adds `color_message`, the message again with terminal colour codes: not an extra field.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName",
                                                                                "color_message"}
# uvicorn configures these with handlers of their own; they are routed to the root handler instead.
_UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access")
_HANDLER_NAME = "flexfleet"


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts (ISO-8601 UTC), level, service, logger, message, the
    record's `extra` fields, and the traceback as `exception` when there is one."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {"ts": _timestamp(record), "level": record.levelname, "service": self.service,
                               "logger": record.name, "message": record.getMessage()}
        for key, value in _extras(record).items():
            doc.setdefault(key, value)       # an extra named like a core field does not replace it
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`2026-11-24T04:23:31.123Z INFO ingest services.ingest.worker: message key=value`."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname} {self.service} {record.name}: {record.getMessage()}"
        extras = _extras(record)
        if extras:
            line += " " + " ".join(f"{k}={v}" for k, v in extras.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record comes (a redirected or captured stream),
    or to the process's own stderr when that stream has been closed meanwhile: a server thread
    may log after whoever redirected stderr (a test runner's capture) has closed its stream."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)
        self._set: TextIO | None = None

    @property
    def stream(self) -> TextIO:  # type: ignore[override]
        current = self._set if self._set is not None else sys.stderr
        if current is None or getattr(current, "closed", False):
            return sys.__stderr__
        return current

    @stream.setter
    def stream(self, value: TextIO | None) -> None:
        """A stream set from outside (logging's setStream, a library redirecting output for a
        while, as pyomo's solvers do) holds until it is set back to sys.stderr."""
        self._set = None if value is sys.stderr else value


def configure_logging(service: str, *, fmt: str | None = None, level: str | int | None = None,
                      stream: TextIO | None = None) -> logging.Handler:
    """Send every log record of this process to `stream` (default: stderr) in the format of
    FLEXFLEET_LOG_FORMAT (or `fmt`): "json", else readable text. Calling it again (a test, an
    app factory called twice) replaces the handler it installed before rather than adding a
    second; handlers others installed on the root logger are left alone. Returns the handler."""
    fmt = (fmt or os.environ.get(FORMAT_ENV) or "text").strip().lower()
    level = level or os.environ.get(LEVEL_ENV, "INFO").strip().upper()
    if isinstance(level, str) and level not in logging.getLevelNamesMapping():
        raise DomainError(LEVEL_ENV, f"must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL; got {level!r}")
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.setFormatter(JsonFormatter(service) if fmt == "json" else TextFormatter(service))
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in _UVICORN:
        logger = logging.getLogger(name)
        if not logger.handlers and not logger.propagate:
            continue      # switched off (uvicorn --no-access-log): routing it would log every request
        logger.handlers.clear()
        logger.propagate = True
    return handler
