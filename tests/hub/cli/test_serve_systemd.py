"""`certhub serve` under a systemd ``Type=notify`` unit, played by a real unix datagram socket
named by NOTIFY_SOCKET: READY=1 once the hub serves (after its banner), STOPPING=1 when the
drain begins, both from the main process only (what ``NotifyAccess=main`` accepts); start-up
banners are JSON log lines on stderr, stdout stays empty; every worker's lines name their
slot (issue 15, items 8 and 11)."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from support.served import REPO, prepare_deployment

from certhub.core.rpc.client import ClientTLS, HubClient
from certhub.hub.demo.world import DemoWorld
from certhub.hub.pki import PkiPaths, issue_client_certificate
from certhub.hub.store.engine import make_engine, sqlite_url

# As the installed `certhub` script starts (`-m certhub.hub.cli.main` warns on stderr about runpy).
CERTHUB = (sys.executable, "-c", "import sys; from certhub.hub.cli import main; sys.exit(main())")
# Importing grpc, SQLAlchemy and building a hub per worker on the shared 2-core machine.
READY_TIMEOUT_SECONDS = 60.0
# SHUTDOWN_GRACE_SECONDS (20 s) is the most a drain takes; an idle hub stops in about one.
STOP_TIMEOUT_SECONDS = 40.0
# struct ucred: pid, uid, gid (three C ints).
_UCRED = struct.Struct("3i")


class Manager:
    """The systemd side: a datagram socket that learns each sender's pid (SO_PASSCRED), as
    systemd does to apply NotifyAccess."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(str(path))

    def receive(self, timeout: float) -> tuple[str, int]:
        self.sock.settimeout(timeout)
        data, ancillary, _flags, _addr = self.sock.recvmsg(4096, socket.CMSG_SPACE(_UCRED.size))
        pid = -1
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = _UCRED.unpack(payload[: _UCRED.size])[0]
        return data.decode(), pid

    def pending(self) -> list[str]:
        """Datagrams already queued, without waiting."""
        found: list[str] = []
        self.sock.setblocking(False)
        try:
            while True:
                found.append(self.sock.recv(4096).decode())
        except BlockingIOError:
            return found


def _deployment(tmp_path: Path, world: DemoWorld) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    engine = make_engine(sqlite_url(data))
    prepare_deployment(data, engine, world.registry_toml())
    engine.dispose()
    return data


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.slow
def test_ready_after_the_banner_and_stopping_at_the_drain_from_the_main_process(
    tmp_path: Path, world: DemoWorld, workers: int
) -> None:
    data = _deployment(tmp_path, world)
    socket_path = tmp_path / "notify"
    manager = Manager(socket_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTHUB_")}
    env |= {"PYTHONPATH": str(REPO), "NOTIFY_SOCKET": str(socket_path)}
    process = subprocess.Popen(
        [
            *(*CERTHUB, "serve", "--data-dir", str(data)),
            *("--address", "127.0.0.1:0", "--workers", str(workers), "--metrics-port", "0"),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stderr: list[str] = []
    assert process.stderr is not None
    pump = threading.Thread(target=lambda: stderr.extend(process.stderr or []), daemon=True)
    pump.start()
    try:
        state, sender = manager.receive(READY_TIMEOUT_SECONDS)
        assert sender == process.pid  # the unit's main process, not a worker
        assert state.startswith("READY=1\nSTATUS=serving on 127.0.0.1:")
        address = state.rsplit(" ", 1)[1]
        # READY means calls are answered now, by every worker.
        pki = PkiPaths(data)
        cert, key = issue_client_certificate(pki, "gulou-service-centre")
        for _ in range(workers * 2):
            with HubClient.connect(address, ClientTLS(ca=pki.ca_cert, cert=cert, key=key)) as c:
                assert c.issuer_keys()
        assert manager.pending() == []  # no worker announced itself on its own
        process.send_signal(signal.SIGTERM)
        state, sender = manager.receive(STOP_TIMEOUT_SECONDS)
        assert (state, sender) == ("STOPPING=1", process.pid)
        assert process.wait(STOP_TIMEOUT_SECONDS) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        manager.sock.close()
    pump.join(timeout=10)
    assert process.stdout is not None
    assert process.stdout.read() == ""  # no start-up text on stdout
    lines = [json.loads(line) for line in stderr]  # every stderr line is a JSON log line
    banners = [line for line in lines if line["msg"].startswith("certhub serving on ")]
    assert [b["address"] for b in banners] == [address]
    assert banners[0]["workers"] == workers
    assert any(line["msg"].startswith("certhub metrics on http://") for line in lines)
    slots = {line["worker"] for line in lines}
    if workers == 1:
        assert slots == {0}
    else:
        assert banners[0]["worker"] == "supervisor"
        assert {0, 1, "supervisor"} <= slots
        for n in (0, 1):  # each worker's own lines name its slot and its pid
            own = [line for line in lines if line["worker"] == n]
            assert len({line["pid"] for line in own}) == 1
            assert own[0]["pid"] != process.pid


@pytest.mark.slow
def test_without_notify_socket_serve_runs_as_before(tmp_path: Path, world: DemoWorld) -> None:
    """Outside systemd (no NOTIFY_SOCKET, or one nobody listens on) nothing fails."""
    data = _deployment(tmp_path, world)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTHUB_")}
    env |= {"PYTHONPATH": str(REPO), "NOTIFY_SOCKET": str(tmp_path / "nobody-listens")}
    process = subprocess.Popen(
        [
            *(*CERTHUB, "serve", "--data-dir", str(data)),
            *("--address", "127.0.0.1:0", "--workers", "1", "--log-format", "text"),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if "certhub serving on 127.0.0.1:" in line:
                break
        else:
            pytest.fail("no banner")
        process.send_signal(signal.SIGTERM)
        assert process.wait(STOP_TIMEOUT_SECONDS) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
