"""A tiny progress reporter: a redrawn bar with rate and ETA on a terminal, plain log lines
at a fixed interval otherwise (so a log file under systemd or cron stays readable)."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["Progress"]

log = logging.getLogger("certhub.adapter.progress")

#: Redraws per second on a terminal: smooth to the eye, negligible cost.
_REDRAW_SECONDS = 0.1
#: One log line per interval when not on a terminal: a 711,100-row backfill at ~1,000/s
#: writes ~70 lines, enough to see the rate without flooding the log.
LOG_INTERVAL_SECONDS = 10.0
_BAR_WIDTH = 30


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


class Progress:
    """Thread-safe counter of settled items (acknowledged or rejected by the hub).

    ``total`` starts as the outbox backlog plus the rows the source expects to read, and is
    corrected as the producer learns what those rows became (an unchanged or unreadable row
    signs nothing, a cancelled first sighting signs two items), so a pass that settles
    everything ends at 100%.
    """

    def __init__(
        self,
        *,
        stream: TextIO | None = None,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty() if tty is None else tty
        self._clock = clock
        self._lock = threading.Lock()
        self._acked = 0
        self._rejected = 0
        self._total: int | None = None
        self._started = clock()
        self._shown = 0.0

    def set_total(self, total: int | None) -> None:
        with self._lock:
            self._total = total

    def add_to_total(self, delta: int) -> None:
        """Correct the expected total (``delta`` < 0: rows that signed nothing)."""
        with self._lock:
            if self._total is not None:
                self._total = max(self._total + delta, 0)

    def advance(self, acked: int = 1, rejected: int = 0) -> None:
        with self._lock:
            self._acked += acked
            self._rejected += rejected
            now = self._clock()
            interval = _REDRAW_SECONDS if self._tty else LOG_INTERVAL_SECONDS
            if now - self._shown >= interval:
                self._shown = now
                self._show(now)

    def line(self) -> str:
        """The current state as one line (what the bar and the log show)."""
        with self._lock:
            return self._describe(self._clock())

    def _describe(self, now: float) -> str:
        elapsed = max(now - self._started, 1e-9)
        done = self._acked + self._rejected
        rate = done / elapsed
        counts = f"{self._acked:,} acknowledged, {self._rejected:,} rejected"
        total = self._total
        if total is None or total < done:
            return f"settled {done:,} ({counts}; {rate:,.0f}/s, {_duration(elapsed)} elapsed)"
        fraction = done / total if total else 1.0
        eta = (total - done) / rate if rate > 0 else float("inf")
        eta_text = _duration(eta) if eta != float("inf") else "?"
        text = f"{done:,}/{total:,} {fraction:6.1%} ({counts}) {rate:,.0f}/s ETA {eta_text}"
        if self._tty:
            filled = int(fraction * _BAR_WIDTH)
            return f"settled [{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {text}"
        return f"settled {text}"

    def _show(self, now: float) -> None:
        text = self._describe(now)
        if self._tty:
            self._stream.write("\r" + text + "\x1b[K")
            self._stream.flush()
        else:
            log.info("%s", text)

    def finish(self) -> None:
        with self._lock:
            self._show(self._clock())
            if self._tty:
                self._stream.write("\n")
                self._stream.flush()
