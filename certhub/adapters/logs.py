"""The adapter's log lines: text for people, or one JSON object per line for a log
collector, with the same keys as the hub's (``ts``, ``level``, ``logger``, ``msg``, the
``extra=`` fields, ``exc``), so one pipeline reads both.

Adapters never import ``hub``; the hub's formatter (``certhub.hub.observability.logs``) also scrubs
ID-shaped tokens, which the adapter's lines do not carry (it logs source locations and the
hub's messages, never a payload).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import sys
from collections.abc import Iterator
from typing import Literal, TextIO

__all__ = [
    "LOG_FORMATS",
    "LOG_FORMAT_ENV",
    "JsonFormatter",
    "LogFormat",
    "log_format",
    "logging_to",
]

LogFormat = Literal["json", "text"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
#: The hub's variable (docs/operations.md): one setting for every certhub process on a host.
LOG_FORMAT_ENV = "CERTHUB_LOG_FORMAT"
_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# LogRecord attributes that are not ``extra=`` fields.
_RECORD_FIELDS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update(
            (key, value)
            for key, value in vars(record).items()
            if key not in _RECORD_FIELDS and not key.startswith("_")
        )
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str, separators=(",", ":"))


def log_format(flag: str | None) -> LogFormat:
    """The command line's choice, else the environment's, else text."""
    chosen = flag or os.environ.get(LOG_FORMAT_ENV) or "text"
    if chosen not in LOG_FORMATS:
        raise ValueError(
            f"{LOG_FORMAT_ENV}: must be one of {', '.join(LOG_FORMATS)}, got {chosen!r}"
        )
    return "json" if chosen == "json" else "text"


@contextlib.contextmanager
def logging_to(fmt: LogFormat, *, stream: TextIO | None = None) -> Iterator[None]:
    """Every log record goes to ``stream`` (stderr) in ``fmt`` while the block runs; the
    root logger's handlers are restored afterwards (the CLI may run inside a longer-lived
    process: tests, the demo)."""
    root = logging.getLogger()
    previous = list(root.handlers)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(_TEXT))
    level = root.level
    for old in previous:
        root.removeHandler(old)
    root.addHandler(handler)
    # INFO at least (progress lines, start and stop), DEBUG if `certhub -v` asked for it.
    root.setLevel(min(level, logging.INFO) if level != logging.NOTSET else logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        for old in previous:
            root.addHandler(old)
