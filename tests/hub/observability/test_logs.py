"""JSON log lines, holder-ID scrubbing, and a real fetch whose logs never carry the holder ID."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator

import pytest
from support.hubs import RunningHub
from support.intake import WINDOW, push_licence

from certhub.core.rpc.client import InvalidArgumentError
from certhub.hub.demo.world import DemoWorld, citizen
from certhub.hub.observability.logs import (
    ACCESS_LOGGER,
    LOG_BATCH_LINES,
    LOG_FLUSH_SECONDS,
    REDACTED,
    BatchingStreamHandler,
    JsonFormatter,
    TextFormatter,
    configure_logging,
    redact,
    request_id_var,
    set_worker,
)


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def captured() -> Iterator[_Lines]:
    """Every log line of every logger, at debug, formatted as the hub writes them."""
    handler = _Lines()
    root, access = logging.getLogger(), logging.getLogger(ACCESS_LOGGER)
    previous = root.level, access.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    access.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(previous[0])
    access.setLevel(previous[1])


def test_redact_scrubs_resident_ids_and_usccs_but_not_hashes_or_longer_numbers() -> None:
    resident = citizen(1).holder.id
    text = f"params ('{resident}', '91350100M000100Y43', 'abc') key 0123456789abcdef01"
    scrubbed = redact(text)
    assert resident not in scrubbed
    assert "91350100M000100Y43" not in scrubbed
    assert scrubbed.count(REDACTED) == 2
    hexdigest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    assert redact(hexdigest) == hexdigest
    assert redact("1" * 19) == "1" * 19  # longer than an ID: not an ID
    assert redact(resident.lower()) == REDACTED  # a lowercase x check char too


def test_json_line_has_extras_request_id_and_scrubbed_traceback() -> None:
    record = logging.LogRecord("certhub.t", logging.ERROR, __file__, 1, "failed %s", ("x",), None)
    record.method = "/certhub.v1.IntakeService/FetchCertificates"
    try:
        raise ValueError(f"bad row {citizen(2).holder.id}")
    except ValueError:
        record.exc_info = sys.exc_info()
    token = request_id_var.set("req-1")
    try:
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(token)
    assert line["msg"] == "failed x"
    assert line["level"] == "error"
    assert line["method"] == "/certhub.v1.IntakeService/FetchCertificates"
    assert line["request_id"] == "req-1"
    assert "ValueError" in line["exc"]
    assert citizen(2).holder.id not in line["exc"]


def test_json_line_says_which_service_host_process_and_worker_wrote_it() -> None:
    """Merged streams of several hubs and workers stay attributable (issue 15, item 8)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # a forked worker, as `certhub serve --workers N` makes them
        try:
            set_worker(3)
            record = logging.LogRecord("certhub.t", logging.INFO, __file__, 1, "hello", (), None)
            os.write(write, JsonFormatter(service="certhub-hub").format(record).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        written = pipe.read()
    os.waitpid(pid, 0)
    line = json.loads(written)
    assert line["service"] == "certhub-hub"
    assert line["host"] == socket.gethostname()
    assert line["pid"] == pid
    assert line["worker"] == 3
    record = logging.LogRecord("certhub.t", logging.INFO, __file__, 1, "hello", (), None)
    here = json.loads(JsonFormatter().format(record))
    assert (here["service"], here["pid"], here["worker"]) == ("certhub", os.getpid(), 0)


def _record(level: int, msg: str) -> logging.LogRecord:
    return logging.LogRecord("certhub.t", level, __file__, 1, msg, None, None)


def test_batching_handler_holds_info_lines_briefly_and_writes_a_warning_at_once() -> None:
    stream = io.StringIO()
    handler = BatchingStreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    try:
        handler.handle(_record(logging.INFO, "one"))
        handler.handle(_record(logging.INFO, "two"))
        assert stream.getvalue() == ""  # held: one write for many access lines
        # A warning goes out at once, after the lines logged before it.
        handler.handle(_record(logging.WARNING, "three"))
        assert stream.getvalue().splitlines() == ["one", "two", "three"]
        # A held line is written by the timer without another record to push it out.
        handler.handle(_record(logging.INFO, "four"))
        deadline = time.monotonic() + 10 * LOG_FLUSH_SECONDS
        while "four" not in stream.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stream.getvalue().splitlines()[-1] == "four"
        # A burst is written every LOG_BATCH_LINES lines, not held for the timer.
        for n in range(LOG_BATCH_LINES):
            handler.handle(_record(logging.INFO, f"burst {n}"))
        assert stream.getvalue().splitlines()[-1] == f"burst {LOG_BATCH_LINES - 1}"
        handler.handle(_record(logging.INFO, "last"))
    finally:
        handler.close()  # logging.shutdown's path: what is held is written
    assert stream.getvalue().splitlines()[-1] == "last"


def test_text_format_and_configure_logging_write_one_line_per_record() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logging.getLogger(ACCESS_LOGGER).level)
    try:
        handler = configure_logging(log_format="json", stream=stream)
        logging.getLogger("certhub.t").info("holder %s", "91350100M000100Y43", extra={"n": 1})
        handler.flush()
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging.getLogger(ACCESS_LOGGER).setLevel(saved[2])
    [line] = stream.getvalue().splitlines()
    assert json.loads(line)["msg"] == f"holder {REDACTED}"
    assert json.loads(line)["n"] == 1
    text = TextFormatter().format(
        logging.LogRecord("certhub.t", logging.INFO, __file__, 1, "hello", None, None)
    )
    assert text.endswith("INFO certhub.t: hello")


def test_a_fetch_logs_method_principal_status_latency_request_id_and_never_the_holder_id(
    running_hub: RunningHub, world: DemoWorld, captured: _Lines
) -> None:
    pushed = push_licence(running_hub, world, 21)
    with running_hub.client(WINDOW) as window:
        fetched = window.fetch(
            id_type="USCC",
            holder_id=pushed.holder_id,
            service_item=pushed.item_code,
            case_number="GL-LOG-1",
        )
        assert fetched.certificates
        # A refused fetch quotes nothing of the bad ID in the logs either.
        good = citizen(5).holder.id
        wrong_check = good[:-1] + ("X" if good[-1] != "X" else "0")
        with pytest.raises(InvalidArgumentError):
            window.fetch(
                id_type="RESIDENT_ID",
                holder_id=wrong_check,
                service_item=pushed.item_code,
                case_number="GL-LOG-2",
            )
    lines = [json.loads(line) for line in captured.lines]
    access = [
        line for line in lines if line["logger"] == "certhub.access" and "Fetch" in line["method"]
    ]
    assert [line["status"] for line in access] == ["OK", "INVALID_ARGUMENT"]
    for line in access:
        assert line["method"] == "/certhub.v1.IntakeService/FetchCertificates"
        assert line["principal"] == WINDOW
        assert line["latency_ms"] > 0
        assert len(line["request_id"]) == 16
    everything = "\n".join(captured.lines)
    assert pushed.holder_id not in everything
    assert good[:-1] not in everything
    assert pushed.number not in everything  # nothing of the certificate payload either
