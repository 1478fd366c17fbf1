"""One error hierarchy for everything in ``signing``.

Callers (the hub's ingest service, ``certhub.core.rpc.client``, monitors) catch ``SigningError``
once and map it to their own domain errors; the message always names the field or part that is
wrong.
"""

from __future__ import annotations

__all__ = ["MalformedEnvelope", "MalformedKey", "MalformedNote", "ProofError", "SigningError"]


class SigningError(Exception):
    """Base class of every error raised by the ``signing`` package."""


# The names below are the agreed public API, hence no "Error" suffix (N818).


class MalformedEnvelope(SigningError):
    """A DSSE envelope could not be parsed or built (size, JSON, base64, fields)."""


class MalformedKey(SigningError):
    """A key could not be parsed, or uses an algorithm or curve the hub does not accept."""


class MalformedNote(SigningError):
    """A signed note, verifier key or checkpoint is malformed or carries no valid signature."""


class ProofError(SigningError):
    """A Merkle inclusion or consistency proof is invalid, or its arguments are out of range."""
