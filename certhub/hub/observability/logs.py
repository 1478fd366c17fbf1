"""Structured logs: one JSON object per line, holder IDs scrubbed from every line.

The standard library's logging is the only logging API in the hub; this module only decides
how a record is written. ``configure_logging`` installs one stderr handler on the root logger
with ``JsonFormatter`` (or ``TextFormatter`` for people at a terminal). Fields passed with
``extra=`` become top-level keys; the request id of the call being served is added to every
line logged while serving it.

Scrubbing is defence in depth: the hub never logs a request, a payload or a holder ID on
purpose, but a driver error can quote SQL parameters (``[parameters: ('110101...',)]``).
Anything shaped like a resident ID (GB 11643) or a USCC (GB 32100) is replaced by
``REDACTED`` before the line is written, in the message and in tracebacks. Passport and
other free-form IDs have no shape to recognise; they are kept out by never being logged.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import os
import re
import socket
import sys
import threading
import weakref
from typing import Literal, TextIO

__all__ = [
    "ACCESS_LOGGER",
    "REDACTED",
    "BatchingStreamHandler",
    "JsonFormatter",
    "LogFormat",
    "TextFormatter",
    "configure_logging",
    "redact",
    "request_id_var",
    "set_worker",
]

LogFormat = Literal["json", "text"]
# The logger of the one-line-per-call access log (certhub.hub.observability.calls).
ACCESS_LOGGER = "certhub.access"
REDACTED = "[redacted-id]"

# Resident ID: 17 digits and a check char (GB 11643-1999). USCC: 18 chars of the GB 32100
# alphabet (no I O S V Z) with digits 3-8 the administrative region. Neither may touch other
# letters or digits, so key ids, hashes and longer numbers are left alone; dots and dashes
# are boundaries, so the issuer USCC inside a certificate id is scrubbed too (harmless).
_ID_SHAPES = re.compile(
    r"(?<![0-9A-Za-z])(?:\d{17}[0-9Xx]|[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10})"
    r"(?![0-9A-Za-z])"
)
# The request id of the call this thread is serving; set by certhub.hub.observability.calls.
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "certhub_request_id", default=None
)
# LogRecord attributes that are not ``extra=`` fields.
_RECORD_FIELDS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


def redact(text: str) -> str:
    """``text`` with every resident-ID- or USCC-shaped token replaced by ``REDACTED``."""
    return _ID_SHAPES.sub(REDACTED, text)


# Who wrote a line, for a log shipper that merges many hubs' and workers' streams: the
# service (``configure_logging(service=...)``), the machine, the process and the worker slot.
DEFAULT_SERVICE = "certhub"
_HOST = socket.gethostname()
# The worker slot of this process: 0 in a hub serving in one process; a forked worker sets
# its own with ``set_worker`` (``certhub serve --workers N``), the supervisor "supervisor".
_worker: int | str = 0


def set_worker(worker: int | str) -> None:
    """Name this process's worker slot in every later log line (call right after the fork)."""
    global _worker  # noqa: PLW0603 - one slot per process, set once after fork
    _worker = worker


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", "service", "host", "pid", "worker", ...extra,
    "request_id", "exc"}`` on one line."""

    def __init__(self, *, service: str = DEFAULT_SERVICE) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
            "service": self.service,
            "host": _HOST,
            "pid": record.process,
            "worker": _worker,
        }
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                line[key] = redact(value) if isinstance(value, str) else value
        request_id = request_id_var.get()
        if request_id is not None:
            line.setdefault("request_id", request_id)
        if record.exc_info:
            line["exc"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exc"] = redact(record.exc_text)
        return json.dumps(line, ensure_ascii=False, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """The classic one-line text format, with extras as ``key=value`` and IDs scrubbed."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extras = [
            f"{key}={value}"
            for key, value in vars(record).items()
            if key not in _RECORD_FIELDS and not key.startswith("_")
        ]
        request_id = request_id_var.get()
        if request_id is not None and "request_id" not in vars(record):
            extras.append(f"request_id={request_id}")
        return redact(" ".join([text, *extras]) if extras else text)


# How long an INFO line may wait in memory before it is written. A serving hub writes one
# access line per call; written one by one (a write and a flush each), the lines cost more
# CPU on the event loop than the fetch they describe (py-spy, bench/fetch_bench.py
# --profile: 14.6% of the loop's busy time in StreamHandler.emit, mostly its write). A
# quarter of a second is well below what a person tailing the log or a shipper notices.
LOG_FLUSH_SECONDS = 0.25
# Lines held at most before they are written anyway: at ~5,000 calls/s per process that is
# a write every 50 ms under load; a burst never holds more than ~100 KB.
LOG_BATCH_LINES = 256


class BatchingStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler that writes INFO and DEBUG lines in batches: at most
    ``LOG_FLUSH_SECONDS`` late or ``LOG_BATCH_LINES`` at a time. WARNING and above are written
    at once, with everything before them, so an error is never held behind a timer and the
    order of lines is kept. ``logging.shutdown`` (run at exit, and by a worker before it
    leaves) flushes what is left. Lines held when a process forks belong to the parent: the
    child drops its copy."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self._held: list[str] = []
        self._timer: threading.Timer | None = None
        _batching.add(self)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        # Handler.handle holds self.lock around emit.
        self._held.append(line)
        if record.levelno >= logging.WARNING or len(self._held) >= LOG_BATCH_LINES:
            self._write_held()
        elif self._timer is None:
            self._timer = threading.Timer(LOG_FLUSH_SECONDS, self.flush)
            self._timer.daemon = True
            self._timer.start()

    def flush(self) -> None:
        assert self.lock is not None  # Handler.__init__ creates it
        with self.lock:
            self._write_held()

    def close(self) -> None:
        self.flush()
        super().close()

    def _write_held(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._held:
            return
        text = "".join(self._held)
        self._held.clear()
        try:
            self.stream.write(text)
            self.stream.flush()
        except Exception:  # as StreamHandler does: report, never take the hub down
            self.handleError(logging.makeLogRecord({"msg": "batched log lines not written"}))

    def _forget(self) -> None:
        self._held = []
        self._timer = None


_batching: weakref.WeakSet[BatchingStreamHandler] = weakref.WeakSet()


def _forget_held_lines() -> None:
    for handler in list(_batching):
        handler._forget()


os.register_at_fork(after_in_child=_forget_held_lines)


def configure_logging(
    *,
    log_format: LogFormat = "json",
    level: int = logging.INFO,
    stream: TextIO | None = None,
    access_log: bool = True,
    service: str = DEFAULT_SERVICE,
) -> logging.Handler:
    """Send every logger's records to ``stream`` (stderr) in ``log_format``, with one access
    line per gRPC call unless ``access_log`` is False; returns the handler. INFO lines reach
    the stream in batches (``BatchingStreamHandler``); call the handler's ``flush`` to read
    them at once."""
    handler = BatchingStreamHandler(stream or sys.stderr)
    handler.setFormatter(
        JsonFormatter(service=service) if log_format == "json" else TextFormatter()
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger(ACCESS_LOGGER).setLevel(logging.NOTSET if access_log else logging.WARNING)
    return handler
