"""Progress: a redrawn bar with rate and ETA on a terminal, log lines otherwise."""

from __future__ import annotations

import io
import logging

import pytest

from certhub.adapters.progress import LOG_INTERVAL_SECONDS, Progress


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_terminal_bar_shows_rate_and_eta() -> None:
    clock, out = _Clock(), io.StringIO()
    progress = Progress(stream=out, tty=True, clock=clock)
    progress.set_total(1000)
    clock.now += 10
    progress.advance(250)
    assert "\r" in out.getvalue()
    line = progress.line()
    assert "250/1,000" in line
    assert "25/s" in line
    assert "ETA 0:00:30" in line
    assert "[#######......" in line


def test_plain_log_lines_at_an_interval_when_not_a_terminal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, out = _Clock(), io.StringIO()
    progress = Progress(stream=out, tty=False, clock=clock)
    with caplog.at_level(logging.INFO, logger="certhub.adapter.progress"):
        for _ in range(100):
            clock.now += LOG_INTERVAL_SECONDS / 20
            progress.advance(1)
    assert out.getvalue() == ""
    lines = [r.getMessage() for r in caplog.records]
    assert 5 <= len(lines) <= 6  # one per interval, not one per item
    assert lines[-1].startswith("settled ")
    assert "/s" in lines[-1]


def test_rejected_items_are_counted_apart_and_a_corrected_total_ends_at_100_percent() -> None:
    clock = _Clock()
    progress = Progress(stream=io.StringIO(), tty=False, clock=clock)
    progress.set_total(10)
    progress.add_to_total(-4)  # four rows were unchanged: they sign nothing
    clock.now += 2
    progress.advance(5, 1)
    line = progress.line()
    assert "6/6 100.0%" in line
    assert "5 acknowledged, 1 rejected" in line
    assert "pushed" not in line
