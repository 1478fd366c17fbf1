"""deploy/systemd/certhub.service: systemd accepts it (systemd-analyze verify), and its
ExecStart run the way systemd runs a ``Type=notify`` unit with ``NotifyAccess=main`` and
``KillMode=mixed`` reaches READY=1 from the main process, drains on KillSignal with STOPPING=1
and exits cleanly within TimeoutStopSec (issue 15, item 11)."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from support.served import REPO, prepare_deployment

from certhub.hub.cli.serve import SHUTDOWN_GRACE_SECONDS
from certhub.hub.demo.world import DemoWorld
from certhub.hub.store.engine import make_engine, sqlite_url
from certhub.hub.workers import EXIT_MARGIN_SECONDS

UNIT = REPO / "deploy" / "systemd" / "certhub.service"
# Where the unit expects the release; the test runs this checkout's instead.
INSTALLED_CERTHUB = "/opt/certhub/bin/certhub"
INSTALLED_CONFIG = "/etc/certhub/hub.toml"
# struct ucred: pid, uid, gid (three C ints), what systemd reads to apply NotifyAccess.
_UCRED = struct.Struct("3i")


def unit_settings(path: Path) -> dict[str, dict[str, list[str]]]:
    """The unit file as systemd reads it: sections of keys, each key's values in order."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _seconds(value: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "min": 60.0}
    for suffix, factor in units.items():
        if value.endswith(suffix) and value[: -len(suffix)].isdigit():
            return int(value[: -len(suffix)]) * factor
    return float(value)


def test_the_unit_is_type_notify_and_stops_within_its_timeout() -> None:
    service = unit_settings(UNIT)["Service"]
    assert service["Type"] == ["notify"]
    assert service["NotifyAccess"] == ["main"]  # the supervisor alone says READY
    assert service["KillMode"] == ["mixed"]  # SIGTERM to the supervisor, which forwards it
    assert service["KillSignal"] == ["SIGTERM"]
    # The supervisor waits the drain plus its margin before it kills stragglers itself.
    assert _seconds(service["TimeoutStopSec"][0]) > SHUTDOWN_GRACE_SECONDS + EXIT_MARGIN_SECONDS
    assert service["User"] == ["certhub"]  # never root
    argv = shlex.split(service["ExecStart"][0])
    assert argv[:2] == [INSTALLED_CERTHUB, "serve"]
    assert unit_settings(UNIT)["Install"]["WantedBy"] == ["multi-user.target"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    """Every key known, every value valid; only the release path differs (it must exist)."""
    certhub = Path(sys.executable).parent / "certhub"
    assert certhub.is_file(), "the test environment installs the certhub script"
    copy = tmp_path / "certhub.service"
    copy.write_text(UNIT.read_text().replace(INSTALLED_CERTHUB, str(certhub)))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr  # no unknown key, no warning


@pytest.mark.slow
def test_execstart_run_as_systemd_does_notifies_ready_and_stopping(
    tmp_path: Path, world: DemoWorld
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    engine = make_engine(sqlite_url(data))
    prepare_deployment(data, engine, world.registry_toml())
    engine.dispose()
    config = tmp_path / "hub.toml"
    config.write_text('address = "127.0.0.1:0"\nworkers = 2\n')
    service = unit_settings(UNIT)["Service"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTHUB_")}
    for assignment in service.get("Environment", []):
        for word in shlex.split(assignment):
            key, _, value = word.partition("=")
            env[key] = value
    assert env["CERTHUB_DATA_DIR"] == "/var/lib/certhub"  # the unit's StateDirectory
    env["CERTHUB_DATA_DIR"] = str(data)
    env["PYTHONPATH"] = str(REPO)
    argv = shlex.split(service["ExecStart"][0])
    argv = [
        *(sys.executable, "-c", "import sys; from certhub.hub.cli import main; sys.exit(main())"),
        *(str(config) if word == INSTALLED_CONFIG else word for word in argv[1:]),
    ]
    notify = tmp_path / "notify"
    env["NOTIFY_SOCKET"] = str(notify)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        manager.bind(str(notify))

        def receive(timeout: float) -> tuple[str, int]:
            manager.settimeout(timeout)
            data, ancillary, _, _ = manager.recvmsg(4096, socket.CMSG_SPACE(_UCRED.size))
            pids = [
                _UCRED.unpack(payload[: _UCRED.size])[0]
                for level, kind, payload in ancillary
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS
            ]
            return data.decode(), pids[0] if pids else -1

        process = subprocess.Popen(
            argv,
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        log: list[str] = []
        pump = threading.Thread(target=lambda: log.extend(process.stderr or []), daemon=True)
        pump.start()
        try:
            state, sender = receive(_seconds(service["TimeoutStartSec"][0]))
            assert sender == process.pid
            assert state.startswith("READY=1\nSTATUS=serving on 127.0.0.1:")
            # KillMode=mixed: KillSignal to the main process only.
            process.send_signal(getattr(signal, service["KillSignal"][0]))
            assert receive(SHUTDOWN_GRACE_SECONDS) == ("STOPPING=1", process.pid)
            status = process.wait(_seconds(service["TimeoutStopSec"][0]))
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        pump.join(timeout=10)
    assert status == 0, "".join(log)
    assert sum('"supervisor: all workers stopped"' in line for line in log) == 1, "".join(log)
