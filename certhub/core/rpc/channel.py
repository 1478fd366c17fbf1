"""The channel to the hub, set up alike by the typed client and the adapters' pusher: mTLS
with a client certificate read from files, the hub's message size limit, and the name to
expect in the hub's certificate when the address uses another one.

What differs stays with each caller: the client adds gRPC's retry policy for the calls safe
to repeat; the pusher adds keepalive and a connection of its own per push stream, and
retries by itself from its outbox. The pusher drives its streams from an asyncio loop, so
the same channel comes in both of grpcio's flavours (``secure_channel``,
``secure_aio_channel``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

__all__ = [
    "INSECURE_PRINCIPAL_HEADER",
    "MAX_MESSAGE_BYTES",
    "ClientTLS",
    "insecure_channel",
    "secure_aio_channel",
    "secure_channel",
]

# Largest message on the wire, either way, for the hub (certhub.hub.grpc.server) and its callers:
# one envelope (1 MiB) plus one attachment (20 MiB) plus framing. gRPC's default receive
# limit, 4 MiB, refused every attachment above it.
MAX_MESSAGE_BYTES = 22 * 1024 * 1024
# Development only (a hub started with --insecure on loopback): the principal a caller
# claims, unverified, in this metadata header.
INSECURE_PRINCIPAL_HEADER = "x-certhub-principal"


@dataclass(frozen=True, kw_only=True)
class ClientTLS:
    """The caller's side of mTLS: the CA that signed the hub's certificate, and the client
    certificate (its CN is the registry principal) with its key."""

    ca: Path
    cert: Path
    key: Path

    def credentials(self) -> grpc.ChannelCredentials:
        """Read the three files (``OSError`` if one cannot be read)."""
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.read_bytes(),
            private_key=self.key.read_bytes(),
            certificate_chain=self.cert.read_bytes(),
        )


def _options(extra: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
    return [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES), *extra]


def _secure_options(
    extra: Sequence[tuple[str, Any]], server_name: str | None
) -> list[tuple[str, Any]]:
    all_options = _options(extra)
    if server_name:
        all_options.append(("grpc.ssl_target_name_override", server_name))
    return all_options


def secure_channel(
    address: str,
    tls: ClientTLS,
    *,
    server_name: str | None = None,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.Channel:
    """An mTLS channel to the hub at ``address``, accepting its largest messages;
    ``server_name`` is the name to expect in the hub's certificate when ``address`` uses
    another one (an IP address, a balancer's name); ``options`` are the caller's own."""
    return grpc.secure_channel(
        address, tls.credentials(), options=_secure_options(options, server_name)
    )


def secure_aio_channel(
    address: str,
    tls: ClientTLS,
    *,
    server_name: str | None = None,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.aio.Channel:
    """``secure_channel`` for asyncio callers (``grpc.aio``). A grpc.aio channel belongs to
    the event loop running when it is made: make it in a coroutine on the loop that uses it."""
    return grpc.aio.secure_channel(
        address, tls.credentials(), options=_secure_options(options, server_name)
    )


def insecure_channel(address: str, *, options: Sequence[tuple[str, Any]] = ()) -> grpc.Channel:
    """A plaintext channel, for a development hub started with --insecure on loopback."""
    return grpc.insecure_channel(address, options=_options(options))
