"""Witness cosignatures on checkpoints (c2sp.org/tlog-cosignature, Ed25519 ``cosignature/v1``).

A cosignature is a note signature line by a witness key:

    — <witness name> base64(key id (4) || timestamp (8, big-endian) || Ed25519 signature (64))

with key id = SHA-256(name || "\\n" || 0x04 || public key)[:4], over the message

    cosignature/v1\\n
    time <timestamp>\\n
    <the checkpoint's note text, every line, final newline included>

The signature type byte 0x04 keeps a witness key's signatures apart from ordinary note
signatures (0x01) made with the same key. Pure functions over text and bytes, like the rest
of ``signing``.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from certhub.signing.errors import MalformedKey, MalformedNote
from certhub.signing.keys import Algorithm, PrivateKey
from certhub.signing.note import (
    _HEX_KEY_HASH,
    _SIGNATURE_PREFIX,
    _b64decode_strict,
    _check_key_name,
    _check_text,
    split_note,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "COSIGNATURE_HEADER",
    "CosignatureSigner",
    "CosignatureVerifier",
    "Cosigned",
    "cosigned_message",
    "verify_cosignatures",
]

# The signature type byte of Ed25519 cosignatures (c2sp.org/tlog-cosignature, "Format").
_COSIGNATURE_TYPE = b"\x04"
# The header line of the signed message: domain separation from every other signed text.
COSIGNATURE_HEADER = "cosignature/v1"
_KEY_ID_SIZE = 4
_TIMESTAMP_SIZE = 8
_ED25519_PUBLIC_KEY_SIZE = 32
_ED25519_SIGNATURE_SIZE = 64
# The spec bounds the timestamp to 2^63 - 1 (it is a u64 on the wire).
MAX_TIMESTAMP = 2**63 - 1


def _key_id(name: str, public_key: bytes) -> bytes:
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + _COSIGNATURE_TYPE + public_key)
    return digest.digest()[:_KEY_ID_SIZE]


def cosigned_message(checkpoint_text: str, timestamp: int) -> bytes:
    """The exact bytes a ``cosignature/v1`` signs: header, time line, the checkpoint text."""
    _check_text(checkpoint_text)
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise MalformedNote(f"cosignature timestamp {timestamp} is outside 0..2^63-1")
    return f"{COSIGNATURE_HEADER}\ntime {timestamp}\n{checkpoint_text}".encode()


@dataclass(frozen=True, slots=True)
class Cosigned:
    """A cosignature that verified: which witness, and when it says it cosigned."""

    name: str
    timestamp: int


class CosignatureSigner:
    """A witness's Ed25519 cosigning key under its name."""

    __slots__ = ("_key_id", "_name", "_private_key", "_public_key")

    def __init__(self, name: str, private_key: PrivateKey) -> None:
        _check_key_name(name)
        if private_key.algorithm is not Algorithm.ED25519:
            raise MalformedKey(
                f"witness {name!r}: cosignatures need an ed25519 key, not {private_key.algorithm}"
            )
        self._name = name
        self._private_key = private_key
        self._public_key = private_key.public_key.raw_ed25519()
        self._key_id = _key_id(name, self._public_key)

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> bytes:
        return self._key_id

    @property
    def vkey(self) -> str:
        """The verifier key: ``<name>+<hex key id>+base64(0x04 || public key)``."""
        encoded = base64.b64encode(_COSIGNATURE_TYPE + self._public_key).decode("ascii")
        return f"{self._name}+{self._key_id.hex()}+{encoded}"

    def cosign(self, checkpoint_text: str, timestamp: int) -> str:
        """One note signature line (newline-terminated) cosigning ``checkpoint_text``."""
        signature = self._private_key.sign(cosigned_message(checkpoint_text, timestamp))
        raw = self._key_id + timestamp.to_bytes(_TIMESTAMP_SIZE, "big") + signature
        return f"{_SIGNATURE_PREFIX}{self._name} {base64.b64encode(raw).decode('ascii')}\n"

    def __repr__(self) -> str:
        return f"CosignatureSigner(name={self._name!r}, key_id={self._key_id.hex()!r})"


class CosignatureVerifier:
    """Checks one witness's cosignatures; build it with ``from_vkey``."""

    __slots__ = ("_key", "_key_id", "_name")

    def __init__(self, *, name: str, key_id: bytes, key: ed25519.Ed25519PublicKey) -> None:
        self._name = name
        self._key_id = key_id
        self._key = key

    @classmethod
    def from_vkey(cls, vkey: str) -> CosignatureVerifier:
        parts = vkey.split("+", 2)
        if len(parts) != 3:
            raise MalformedNote(
                f"witness key {vkey!r} must have the form <name>+<hex key id>+<base64 key>"
            )
        name, hex_id, encoded = parts
        _check_key_name(name)
        if not _HEX_KEY_HASH.fullmatch(hex_id):
            raise MalformedNote(f"witness key {name!r}: key id {hex_id!r} is not 8 lowercase hex")
        raw = _b64decode_strict(encoded, what=f"witness key {name!r}: public key")
        if raw[:1] != _COSIGNATURE_TYPE:
            raise MalformedNote(
                f"witness key {name!r}: signature type {raw[:1].hex() or 'missing'} is not 04 "
                "(Ed25519 cosignature/v1)"
            )
        public = raw[1:]
        if len(public) != _ED25519_PUBLIC_KEY_SIZE:
            raise MalformedNote(
                f"witness key {name!r}: Ed25519 public key is {len(public)} bytes, expected 32"
            )
        key_id = _key_id(name, public)
        if key_id.hex() != hex_id:
            raise MalformedNote(
                f"witness key {name!r}: key id {hex_id} does not match the key "
                f"(computed {key_id.hex()})"
            )
        return cls(name=name, key_id=key_id, key=ed25519.Ed25519PublicKey.from_public_bytes(public))

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> bytes:
        return self._key_id

    def verify(self, checkpoint_text: str, raw: bytes) -> Cosigned | None:
        """``raw`` is a signature line's decoded bytes after the key id; None if it fails."""
        if len(raw) != _TIMESTAMP_SIZE + _ED25519_SIGNATURE_SIZE:
            return None
        timestamp = int.from_bytes(raw[:_TIMESTAMP_SIZE], "big")
        if timestamp > MAX_TIMESTAMP:
            return None
        try:
            self._key.verify(raw[_TIMESTAMP_SIZE:], cosigned_message(checkpoint_text, timestamp))
        except InvalidSignature:
            return None
        return Cosigned(name=self._name, timestamp=timestamp)

    def __repr__(self) -> str:
        return f"CosignatureVerifier(name={self._name!r}, key_id={self._key_id.hex()!r})"


def verify_cosignatures(note: str, witnesses: Sequence[CosignatureVerifier]) -> list[Cosigned]:
    """The witnesses among ``witnesses`` whose cosignature on ``note`` verifies, once each.

    Lines by unknown keys are ignored (the log's own signature, witnesses not trusted here);
    a line by a known witness key that does not verify makes the note invalid, as a bad
    signature by a known key does in ``certhub.signing.note.open_note``."""
    text, lines = split_note(note)
    by_identity = {(w.name, w.key_id): w for w in witnesses}
    found: dict[str, Cosigned] = {}
    for number, (name, raw) in enumerate(lines, start=1):
        witness = by_identity.get((name, raw[:_KEY_ID_SIZE]))
        if witness is None:
            continue
        cosigned = witness.verify(text, raw[_KEY_ID_SIZE:])
        if cosigned is None:
            raise MalformedNote(f"cosignature line {number} by witness {name!r} does not verify")
        found.setdefault(name, cosigned)
    return list(found.values())
