"""systemd's readiness protocol (sd_notify(3)) without libsystemd: one datagram per state.

Under a unit with ``Type=notify`` systemd sets ``NOTIFY_SOCKET`` to a unix datagram socket
(a path, or an abstract name starting with ``@``) and waits for ``READY=1`` before it calls
the service started; ``STOPPING=1`` says a stop has begun. Outside systemd the variable is
unset and every call here does nothing, so the hub calls them unconditionally.
"""

from __future__ import annotations

import os
import socket

__all__ = ["NOTIFY_SOCKET_ENV", "notify", "notify_ready", "notify_stopping"]

NOTIFY_SOCKET_ENV = "NOTIFY_SOCKET"


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``) to systemd; False when not run by systemd or the
    socket is gone (a notification is advice to the manager, never a reason to fail)."""
    address = os.environ.get(NOTIFY_SOCKET_ENV)
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket: a leading NUL byte on Linux
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError:
        return False
    return True


def notify_ready(status: str = "") -> bool:
    """The hub accepts calls."""
    return notify("READY=1" + (f"\nSTATUS={status}" if status else ""))


def notify_stopping() -> bool:
    """A stop has begun: the hub drains its calls."""
    return notify("STOPPING=1")
