"""C2SP signed notes and tlog checkpoints (c2sp.org/signed-note, c2sp.org/tlog-checkpoint).

Only Ed25519 note keys (signature type 0x01) are supported: that is what the hub's audit log
signs with and what Go's sumdb, Sigstore and the witness ecosystem use.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from certhub.signing.errors import MalformedKey, MalformedNote
from certhub.signing.keys import Algorithm, PrivateKey

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "MAX_NOTE_SIGNATURES",
    "MAX_TREE_SIZE",
    "Checkpoint",
    "NoteSigner",
    "NoteVerifier",
    "open_note",
    "parse_checkpoint",
    "split_note",
]

# The signature type byte of Ed25519 note keys (c2sp.org/signed-note, "Signature types").
_ED25519_TYPE = b"\x01"
_ED25519_PUBLIC_KEY_SIZE = 32
_ED25519_SIGNATURE_SIZE = 64
_KEY_HASH_SIZE = 4
_SIGNATURE_PREFIX = "\u2014 "  # EM DASH and a space start every signature line.

# Go's golang.org/x/mod/sumdb/note refuses notes with more than 100 signatures; a
# checkpoint carries one log signature plus a handful of witness cosignatures, so the same
# bound keeps parsing cheap without refusing any real note.
MAX_NOTE_SIGNATURES = 100

# Tree sizes are uint64 in every tlog implementation (c2sp.org/tlog-checkpoint).
MAX_TREE_SIZE = 2**64 - 1

_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_HEX_KEY_HASH = re.compile(r"[0-9a-f]{8}")


def _check_key_name(name: str) -> None:
    if not name:
        raise MalformedNote("note key name is empty")
    if "+" in name or any(c.isspace() for c in name):
        raise MalformedNote(f"note key name {name!r} must not contain '+' or whitespace")
    if not name.isprintable():
        raise MalformedNote(f"note key name {name!r} contains control characters")


def _key_hash(name: str, public_key: bytes) -> bytes:
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + _ED25519_TYPE + public_key).digest()
    return digest[:_KEY_HASH_SIZE]


def _b64decode_strict(value: str, *, what: str) -> bytes:
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedNote(f"{what} is not valid base64") from exc
    # b64decode tolerates some non-canonical inputs; a round trip pins one encoding per value.
    if base64.b64encode(decoded).decode("ascii") != value:
        raise MalformedNote(f"{what} is not canonical standard base64")
    return decoded


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise MalformedNote("note text must end with a newline")
    if any(not c.isprintable() and c != "\n" for c in text):
        raise MalformedNote("note text contains control characters other than newline")


class NoteSigner:
    """Signs notes with an Ed25519 key under a key name (for the hub: the log's origin)."""

    __slots__ = ("_key_hash", "_name", "_private_key", "_public_key")

    def __init__(self, name: str, private_key: PrivateKey) -> None:
        _check_key_name(name)
        if private_key.algorithm is not Algorithm.ED25519:
            raise MalformedKey(
                f"note signer {name!r}: signed notes need an ed25519 key, "
                f"not {private_key.algorithm}"
            )
        self._name = name
        self._private_key = private_key
        self._public_key = private_key.public_key.raw_ed25519()
        self._key_hash = _key_hash(name, self._public_key)

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_hash(self) -> bytes:
        return self._key_hash

    @property
    def vkey(self) -> str:
        """The verifier key string that ``NoteVerifier.from_vkey`` accepts."""
        encoded = base64.b64encode(_ED25519_TYPE + self._public_key).decode("ascii")
        return f"{self._name}+{self._key_hash.hex()}+{encoded}"

    def sign(self, text: str) -> str:
        """The complete signed note: text, a blank line, and one signature line."""
        _check_text(text)
        signature = self._private_key.sign(text.encode("utf-8"))
        encoded = base64.b64encode(self._key_hash + signature).decode("ascii")
        return f"{text}\n{_SIGNATURE_PREFIX}{self._name} {encoded}\n"

    def __repr__(self) -> str:
        return f"NoteSigner(name={self._name!r}, key_hash={self._key_hash.hex()!r})"


class NoteVerifier:
    """Verifies one key's signatures on notes; build it with ``from_vkey``."""

    __slots__ = ("_key", "_key_hash", "_name")

    def __init__(self, *, name: str, key_hash: bytes, key: ed25519.Ed25519PublicKey) -> None:
        self._name = name
        self._key_hash = key_hash
        self._key = key

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        # The base64 key may itself contain '+'; the name and the hex hash never do.
        parts = vkey.split("+", 2)
        if len(parts) != 3:
            raise MalformedNote(
                f"verifier key {vkey!r} must have the form <name>+<hex key hash>+<base64 key>"
            )
        name, hex_hash, encoded = parts
        _check_key_name(name)
        if not _HEX_KEY_HASH.fullmatch(hex_hash):
            raise MalformedNote(
                f"verifier key {name!r}: key hash {hex_hash!r} is not 8 lowercase hex digits"
            )
        raw = _b64decode_strict(encoded, what=f"verifier key {name!r}: public key")
        if raw[:1] != _ED25519_TYPE:
            raise MalformedNote(
                f"verifier key {name!r}: unsupported signature type "
                f"{raw[:1].hex() or 'missing'}; only 01 (Ed25519) is supported"
            )
        public = raw[1:]
        if len(public) != _ED25519_PUBLIC_KEY_SIZE:
            raise MalformedNote(
                f"verifier key {name!r}: Ed25519 public key is {len(public)} bytes, "
                f"expected {_ED25519_PUBLIC_KEY_SIZE}"
            )
        key_hash = _key_hash(name, public)
        if key_hash.hex() != hex_hash:
            raise MalformedNote(
                f"verifier key {name!r}: key hash {hex_hash} does not match the key "
                f"(computed {key_hash.hex()})"
            )
        return cls(
            name=name, key_hash=key_hash, key=ed25519.Ed25519PublicKey.from_public_bytes(public)
        )

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_hash(self) -> bytes:
        return self._key_hash

    def verify(self, text: bytes, sig: bytes) -> bool:
        """True if ``sig`` (without the 4-byte key hash) signs ``text``; never raises."""
        try:
            self._key.verify(sig, text)
        except InvalidSignature:
            return False
        return True

    def __repr__(self) -> str:
        return f"NoteVerifier(name={self._name!r}, key_hash={self._key_hash.hex()!r})"


def split_note(note: str) -> tuple[str, list[tuple[str, bytes]]]:
    """A note's text and its signature lines as (key name, decoded bytes), checked for form
    only: nothing is verified here."""
    split = note.rfind("\n\n")
    if split < 0:
        raise MalformedNote("note has no blank line separating the text from its signatures")
    text, signature_block = note[: split + 1], note[split + 2 :]
    _check_text(text)
    if not signature_block:
        raise MalformedNote("note has no signature lines after the blank line")
    if not signature_block.endswith("\n"):
        raise MalformedNote("note signature block must end with a newline")
    lines = signature_block[:-1].split("\n")
    if len(lines) > MAX_NOTE_SIGNATURES:
        raise MalformedNote(
            f"note has {len(lines)} signature lines, more than the limit of {MAX_NOTE_SIGNATURES}"
        )
    signatures: list[tuple[str, bytes]] = []
    for number, line in enumerate(lines, start=1):
        if not line.startswith(_SIGNATURE_PREFIX):
            raise MalformedNote(
                f"note signature line {number} does not start with an em dash and a space"
            )
        fields = line[len(_SIGNATURE_PREFIX) :].split(" ")
        if len(fields) != 2 or not fields[0] or not fields[1]:
            raise MalformedNote(
                f"note signature line {number} must be '\u2014 <name> <base64 signature>'"
            )
        name, encoded = fields
        raw = _b64decode_strict(encoded, what=f"note signature line {number}")
        if len(raw) <= _KEY_HASH_SIZE:
            raise MalformedNote(f"note signature line {number} is too short to hold a signature")
        signatures.append((name, raw))
    return text, signatures


def open_note(note: str, verifiers: Sequence[NoteVerifier]) -> str:
    """Return the note's text if a known verifier's signature on it verifies.

    Signature lines by unknown keys are ignored (they may be witnesses we do not track),
    but a line by a known key that does not verify makes the whole note invalid.
    """
    text, signatures = split_note(note)
    by_identity = {(v.name, v.key_hash): v for v in verifiers}
    message = text.encode("utf-8")
    verified = False
    for name, raw in signatures:
        verifier = by_identity.get((name, raw[:_KEY_HASH_SIZE]))
        if verifier is None:
            continue
        if len(raw) - _KEY_HASH_SIZE != _ED25519_SIGNATURE_SIZE or not verifier.verify(
            message, raw[_KEY_HASH_SIZE:]
        ):
            raise MalformedNote(f"note signature by known key {name!r} does not verify")
        verified = True
    if not verified:
        known = ", ".join(sorted({v.name for v in verifiers})) or "none"
        raise MalformedNote(f"note has no signature by a known key (known: {known})")
    return text


@dataclass(frozen=True)
class Checkpoint:
    """A tlog checkpoint body: the log's origin, tree size and root hash."""

    origin: str
    size: int
    root_hash: bytes

    def to_text(self) -> str:
        if not self.origin or "\n" in self.origin or not self.origin.isprintable():
            raise MalformedNote(f"checkpoint origin {self.origin!r} must be one printable line")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise MalformedNote(f"checkpoint size {self.size} is outside 0..2^64-1")
        if len(self.root_hash) != 32:
            raise MalformedNote(f"checkpoint root hash is {len(self.root_hash)} bytes, expected 32")
        root = base64.b64encode(self.root_hash).decode("ascii")
        return f"{self.origin}\n{self.size}\n{root}\n"


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse a checkpoint body strictly; extension lines after the root are ignored."""
    if not text.endswith("\n"):
        raise MalformedNote("checkpoint must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise MalformedNote(
            f"checkpoint has {len(lines)} line(s); origin, size and root hash are required"
        )
    origin, size_text, root_text = lines[:3]
    if not origin:
        raise MalformedNote("checkpoint origin (line 1) is empty")
    if not _DECIMAL.fullmatch(size_text):
        raise MalformedNote(
            f"checkpoint size (line 2) {size_text!r} is not a decimal number without leading zeros"
        )
    size = int(size_text)
    if size > MAX_TREE_SIZE:
        raise MalformedNote(f"checkpoint size (line 2) {size} is larger than 2^64-1")
    root_hash = _b64decode_strict(root_text, what="checkpoint root hash (line 3)")
    if len(root_hash) != 32:
        raise MalformedNote(f"checkpoint root hash (line 3) is {len(root_hash)} bytes, expected 32")
    for number, extension in enumerate(lines[3:], start=4):
        if not extension:
            raise MalformedNote(f"checkpoint line {number} is empty")
    return Checkpoint(origin=origin, size=size, root_hash=root_hash)
