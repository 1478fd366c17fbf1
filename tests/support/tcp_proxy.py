"""A loopback TCP relay between a client and a real server: counts the connections and the
bytes each carried, and can stall or cut one connection (what a frozen or a dead hub process
looks like to that connection alone). TLS passes through untouched, end to end."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

#: Relay buffer: a few envelopes per read; the relay is never the bottleneck in a test.
_CHUNK = 64 * 1024


@dataclass
class Relayed:
    """One client connection through the relay."""

    number: int
    client: socket.socket
    server: socket.socket
    bytes_up: int = 0
    bytes_down: int = 0
    closed: threading.Event = field(default_factory=threading.Event)
    # Cleared while the client's bytes are held back (a stalled hub process, as the client
    # sees it: its writes are accepted, nothing is answered).
    flowing: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.flowing.set()

    def pause(self) -> None:
        self.flowing.clear()

    def resume(self) -> None:
        self.flowing.set()

    def cut(self) -> None:
        """Reset both sides at once."""
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                # Linger 0: close sends RST, as a crashed peer's kernel does.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self.closed.set()


class TcpRelay:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.connections: list[Relayed] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._held = False
        self._thread = threading.Thread(target=self._accept, name="tcp-relay", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def snapshot(self) -> list[Relayed]:
        with self._lock:
            return list(self.connections)

    def blackhole(self) -> None:
        """Hold back every client's bytes, on open and on new connections alike (a network
        path that silently drops packets): connects succeed, nothing is answered."""
        with self._lock:
            self._held = True
            for relayed in self.connections:
                relayed.pause()

    def restore(self) -> None:
        with self._lock:
            self._held = False
            for relayed in self.connections:
                relayed.resume()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self._target)
            except OSError:
                client.close()
                continue
            with self._lock:
                relayed = Relayed(number=len(self.connections), client=client, server=server)
                if self._held:
                    relayed.pause()
                self.connections.append(relayed)
            for up in (True, False):
                threading.Thread(target=self._pump, args=(relayed, up), daemon=True).start()

    def _pump(self, relayed: Relayed, up: bool) -> None:
        source, sink = (relayed.client, relayed.server) if up else (relayed.server, relayed.client)
        try:
            while data := source.recv(_CHUNK):
                if up:
                    relayed.flowing.wait()
                sink.sendall(data)
                if up:
                    relayed.bytes_up += len(data)
                else:
                    relayed.bytes_down += len(data)
        except OSError:
            pass
        finally:
            relayed.closed.set()
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._stopped.set()
        # Closing a listening socket does not wake a thread blocked in accept() on Linux
        # (the join below waited out its 5 s every time); shutting it down does.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for relayed in self.snapshot():
            relayed.resume()
            relayed.cut()
            relayed.client.close()
            relayed.server.close()
        self._thread.join(timeout=5)


@contextlib.contextmanager
def tcp_relay(address: str) -> Iterator[TcpRelay]:
    """A relay to ``host:port`` for the duration of the block."""
    host, _, port = address.rpartition(":")
    relay = TcpRelay("127.0.0.1" if host == "localhost" else host, int(port))
    try:
        yield relay
    finally:
        relay.close()
