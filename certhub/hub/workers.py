"""The process model of ``certhub serve --workers N``: a supervisor and N forked workers.

The parent forks every worker before any gRPC server, channel, thread or database engine
exists in it (gRPC's core and connection pools do not survive a fork), then only
supervises. Each worker builds its own engine, hub and server and binds the same port
through SO_REUSEPORT, so the kernel spreads connections over the workers. The parent:

* restarts a worker that dies, after a delay that doubles while it keeps dying young;
* on SIGTERM/SIGINT forwards SIGTERM to every worker, which drains its in-flight calls
  and flushes the audit group commit, then exits 0 once they all have.

Nothing here knows what a worker does: ``Supervisor`` runs any ``WorkerMain``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("certhub.workers")

__all__ = [
    "BACKOFF_FIRST_SECONDS",
    "BACKOFF_MAX_SECONDS",
    "STABLE_SECONDS",
    "Supervisor",
    "WorkerMain",
    "resolve_port",
]

# A worker that crashes is restarted after this delay, doubled for each further crash
# that comes before it ran STABLE_SECONDS: quick enough that one bad request costing a
# worker is invisible to clients, slow enough that a crash loop does not eat the cores.
BACKOFF_FIRST_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0
# A worker that served this long is considered healthy: its next crash restarts quickly.
STABLE_SECONDS = 60.0

# Beyond the workers' own drain grace: time to flush the group commit, close pools and
# exit. After that the supervisor kills what is left rather than hang its orchestrator.
EXIT_MARGIN_SECONDS = 10.0

# How often the supervisor looks at its children when nothing else wakes it.
POLL_SECONDS = 0.2

# A worker's entry point: (slot, fd to write one byte to once serving) -> exit status.
WorkerMain = Callable[[int, int], int]


def resolve_port(address: str) -> str:
    """``address`` with port 0 replaced by a free port, so every worker binds the same one.

    The port is free when chosen; another program could take it before the workers bind,
    in which case they fail to start and the supervisor says so.
    """
    host, _, port = address.rpartition(":")
    if port != "0":
        return address
    bare = host.strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((bare if bare not in ("", "localhost") else "127.0.0.1", 0))
        chosen = sock.getsockname()[1]
    return f"{host}:{chosen}"


@dataclass
class _Slot:
    index: int
    pid: int = 0
    last_pid: int = 0
    started: float = 0.0
    crashes: int = 0  # consecutive crashes before STABLE_SECONDS
    restart_at: float | None = None


class Supervisor:
    """Forks ``count`` workers running ``main`` and keeps them running until told to stop."""

    def __init__(
        self,
        *,
        count: int,
        main: WorkerMain,
        grace_seconds: float,
        on_ready: Callable[[], None] = lambda: None,
        on_stopping: Callable[[], object] = lambda: None,
    ) -> None:
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        self._count = count
        self._main = main
        self._grace = grace_seconds
        self._on_ready = on_ready
        self._on_stopping = on_stopping
        self._slots = [_Slot(i) for i in range(count)]
        self._stopping = False
        self._ever_ready: set[int] = set()
        self.restarts = 0  # for metrics and tests

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; 0 when every worker drained and exited cleanly."""
        ready_read, ready_write = os.pipe()
        os.set_blocking(ready_read, False)
        previous = {
            signum: signal.signal(signum, self._stop) for signum in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            for slot in self._slots:
                self._spawn(slot, ready_read, ready_write)
            return self._supervise(ready_read, ready_write)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            os.close(ready_read)
            os.close(ready_write)

    def _stop(self, signum: int, _frame: object) -> None:
        if not self._stopping:
            log.info("supervisor: %s, stopping workers", signal.Signals(signum).name)
        self._stopping = True

    def _spawn(self, slot: _Slot, ready_read: int, ready_write: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            status = 1
            try:
                for signum in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(signum, signal.SIG_DFL)
                os.close(ready_read)
                status = self._main(slot.index, ready_write)
            except BaseException:
                log.exception("worker %d failed", slot.index)
            finally:
                logging.shutdown()
                os._exit(status)
        slot.pid = pid
        slot.started = time.monotonic()
        slot.restart_at = None
        log.info("worker %d started (pid %d)", slot.index, pid)

    def _supervise(self, ready_read: int, ready_write: int) -> int:
        announced = False
        failed_startup = False
        while not self._stopping:
            with contextlib.suppress(InterruptedError):
                readable, _, _ = select.select([ready_read], [], [], POLL_SECONDS)
                if readable:
                    self._read_ready(ready_read)
            if not announced and len(self._ever_ready) == self._count:
                announced = True
                self._on_ready()
            for slot, status in self._reap():
                if slot.index not in self._ever_ready and not self._ever_ready:
                    log.error(
                        "worker %d exited (%s) before any worker could serve: giving up",
                        slot.index,
                        _describe(status),
                    )
                    failed_startup = True
                    self._stopping = True
                    break
                self._schedule_restart(slot, status)
            now = time.monotonic()
            for slot in self._slots:
                if not self._stopping and slot.restart_at is not None and now >= slot.restart_at:
                    self.restarts += 1
                    self._spawn(slot, ready_read, ready_write)
        self._on_stopping()
        clean = self._stop_all()
        return 0 if clean and not failed_startup else 1

    def _read_ready(self, ready_read: int) -> None:
        with contextlib.suppress(BlockingIOError):
            for byte in os.read(ready_read, 4096):
                self._ever_ready.add(byte)

    def _reap(self) -> list[tuple[_Slot, int]]:
        """Workers that exited. Waits on each worker's pid, never on -1, so children other
        parts of this process started (a metrics server, say) are not reaped behind their back."""
        exited: list[tuple[_Slot, int]] = []
        for slot in self._slots:
            if not slot.pid:
                continue
            try:
                pid, status = os.waitpid(slot.pid, os.WNOHANG)
            except ChildProcessError:  # already reaped elsewhere: gone all the same
                pid, status = slot.pid, 0
            if pid == slot.pid:
                slot.last_pid, slot.pid = pid, 0
                exited.append((slot, status))
        return exited

    def _schedule_restart(self, slot: _Slot, status: int) -> None:
        lived = time.monotonic() - slot.started
        slot.crashes = 1 if lived >= STABLE_SECONDS else slot.crashes + 1
        delay = min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** (slot.crashes - 1))
        slot.restart_at = time.monotonic() + delay
        log.warning(
            "worker %d (pid %d) %s after %.1f s; restarting in %.1f s",
            slot.index,
            slot.last_pid,
            _describe(status),
            lived,
            delay,
        )

    def _stop_all(self) -> bool:
        """SIGTERM every worker, wait for their drain, kill stragglers; True if all exited 0."""
        running = [s for s in self._slots if s.pid]
        for slot in running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(slot.pid, signal.SIGTERM)
        deadline = time.monotonic() + self._grace + EXIT_MARGIN_SECONDS
        clean = True
        while any(s.pid for s in self._slots):
            for slot, status in self._reap():
                code = os.waitstatus_to_exitcode(status)
                # Killed by SIGTERM's default action: the worker had not installed its
                # handler yet, so it had nothing in flight to lose.
                if code not in (0, -signal.SIGTERM):
                    clean = False
                    log.error("worker %d stopped with %s", slot.index, _describe(status))
            if time.monotonic() > deadline:
                for slot in self._slots:
                    if slot.pid:
                        log.error("worker %d did not stop in time: killing it", slot.index)
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(slot.pid, signal.SIGKILL)
                clean = False
                deadline = float("inf")
            time.sleep(POLL_SECONDS / 4)
        log.info("supervisor: all workers stopped")
        return clean


def _describe(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exited with status {code}"


def notify_ready(fd: int, slot: int) -> None:
    """Tell the supervisor this worker serves (one byte: its slot)."""
    with contextlib.suppress(OSError):
        os.write(fd, bytes([slot]))


def parent_alive(parent_pid: int) -> bool:
    """False once the supervisor is gone (a worker then re-parents to another process)."""
    return os.getppid() == parent_pid
