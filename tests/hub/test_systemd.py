"""sd_notify over a real unix datagram socket named by NOTIFY_SOCKET (issue 15, item 11)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from certhub.hub.systemd import NOTIFY_SOCKET_ENV, notify_ready, notify_stopping


def test_ready_and_stopping_reach_the_notify_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind(str(path))
        manager.settimeout(5)
        monkeypatch.setenv(NOTIFY_SOCKET_ENV, str(path))
        assert notify_ready("serving on 127.0.0.1:50051")
        assert manager.recv(4096) == b"READY=1\nSTATUS=serving on 127.0.0.1:50051"
        assert notify_stopping()
        assert manager.recv(4096) == b"STOPPING=1"


def test_an_abstract_socket_name_works(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    name = f"certhub-test-{tmp_path.name}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind("\0" + name)
        manager.settimeout(5)
        monkeypatch.setenv(NOTIFY_SOCKET_ENV, "@" + name)
        assert notify_ready()
        assert manager.recv(4096) == b"READY=1"


def test_without_systemd_nothing_happens(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(NOTIFY_SOCKET_ENV, raising=False)
    assert notify_ready() is False
    monkeypatch.setenv(NOTIFY_SOCKET_ENV, str(tmp_path / "gone"))
    assert notify_stopping() is False
