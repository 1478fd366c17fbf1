"""Running the console: as its own process (`certhub console`), or beside the demo's hub
(`certhub demo --serve`). Both block until interrupted."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12

from certhub.hub.casework import Casework
from certhub.hub.web.console import Console, Targets
from certhub.hub.web.server import ConsoleTLS, RunningConsole, start_console

# The console's default address: loopback, the HTTPS alternative port. Operators put it
# behind nothing: it terminates TLS itself (the client certificate is the login).
DEFAULT_CONSOLE_ADDRESS = "127.0.0.1:8443"


def browser_bundle(cert: Path, key: Path, *, password: str, name: str) -> bytes:
    """A principal's client certificate and key as PKCS#12, the form browsers import."""
    certificate = x509.load_pem_x509_certificate(cert.read_bytes())
    private_key = serialization.load_pem_private_key(key.read_bytes(), password=None)
    # The hub's PKI issues P-256 client keys (certhub.hub.pki).
    assert isinstance(private_key, ec.EllipticCurvePrivateKey)
    return pkcs12.serialize_key_and_certificates(
        name.encode(),
        private_key,
        certificate,
        None,
        serialization.BestAvailableEncryption(password.encode()),
    )


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"address {address!r} is not host:port")
    return host.strip("[]"), int(port)


def serve_forever(
    work: Casework,
    *,
    address: str,
    tls: ConsoleTLS,
    targets: Targets,
    ready: Callable[[RunningConsole], None],
) -> None:
    """Serve until SIGINT or SIGTERM; ``ready`` is called once the port is bound."""
    host, port = split_address(address)

    async def main() -> None:
        running = await start_console(Console(work, targets=targets), host=host, port=port, tls=tls)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        ready(running)
        try:
            await stop.wait()
        finally:
            await running.stop()

    asyncio.run(main())
