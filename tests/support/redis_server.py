"""A redis-server a test owns, so it can be killed, paused and restarted (outage tests)."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
import redis

if TYPE_CHECKING:
    from pathlib import Path

# A freshly started redis-server answers PING within milliseconds; on the shared 2-core
# machine give it a few seconds before calling the start a failure.
SERVER_START_TIMEOUT = 5.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A redis-server this test owns, so it can be killed, paused and restarted."""

    def __init__(self, *, executable: str, directory: Path) -> None:
        self._executable = executable
        self._directory = directory
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def admin(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2.0)

    def start(self) -> None:
        # --save "" keeps the server from snapshotting on its own; an explicit save()
        # still writes dump.rdb into the directory, and start() loads it if present.
        self.process = subprocess.Popen(
            [
                self._executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                str(self._directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            client = self.admin()
            try:
                if client.ping():
                    return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
            finally:
                client.close()

    def save(self) -> None:
        client = self.admin()
        try:
            client.save()
        finally:
            client.close()

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@contextlib.contextmanager
def own_redis_server(directory: Path) -> Iterator[RedisServer]:
    """A started redis-server of the test's own on a spare port, always stopped afterwards
    (skips the test when redis-server is not installed)."""
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.skip("redis-server is not on PATH; the outage tests start their own server")
    server = RedisServer(executable=executable, directory=directory)
    server.start()
    try:
        yield server
    finally:
        if server.process is not None and server.process.poll() is None:
            server.process.send_signal(signal.SIGCONT)  # a paused server cannot be killed cleanly
        server.kill()
