"""The ``add-checkpoint`` wire format of c2sp.org/tlog-witness: pure functions over text.

Request body::

    old <size>\\n
    <base64 consistency proof hash>\\n      (0 to 63 lines)
    \\n
    <checkpoint note: text, blank line, signature lines>

A 409 answer carries the witness's known size, ``<size>\\n``, as ``text/x.tlog.size``; a 200
answer is one or more note signature lines (the cosignatures).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

# c2sp.org/tlog-witness: "The client MUST NOT send more than 63 consistency proof lines"
# (a proof between two uint64 sizes has at most 2*64-ish nodes, and 63 covers every real log).
MAX_PROOF_LINES = 63
# The largest request body a witness reads: 63 proof lines of 45 bytes, a checkpoint of a few
# hundred bytes and up to 100 signature lines (certhub.signing.note.MAX_NOTE_SIGNATURES) of ~150
# bytes stay under 20 KB; 64 KiB leaves room for extension lines and long names.
MAX_REQUEST_BYTES = 64 * 1024
# The media type of a 409 answer's body (c2sp.org/tlog-witness, add-checkpoint).
SIZE_MEDIA_TYPE = "text/x.tlog.size"
HASH_SIZE = 32

_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")


class BadRequest(ValueError):
    """The body is not an add-checkpoint request (HTTP 400)."""


@dataclass(frozen=True, slots=True)
class AddCheckpoint:
    old_size: int
    proof: tuple[bytes, ...]
    note: str


def encode_request(old_size: int, proof: tuple[bytes, ...] | list[bytes], note: str) -> bytes:
    if len(proof) > MAX_PROOF_LINES:
        raise BadRequest(f"{len(proof)} proof lines, more than {MAX_PROOF_LINES}")
    lines = [f"old {old_size}\n"]
    lines.extend(base64.b64encode(h).decode("ascii") + "\n" for h in proof)
    lines.append("\n")
    return ("".join(lines) + note).encode("utf-8")


def parse_request(body: bytes) -> AddCheckpoint:
    if len(body) > MAX_REQUEST_BYTES:
        raise BadRequest(f"request body is {len(body)} bytes, more than {MAX_REQUEST_BYTES}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRequest("request body is not UTF-8") from e
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise BadRequest("request has no empty line before the checkpoint")
    lines = head.split("\n")
    first = lines[0]
    if not first.startswith("old ") or not _DECIMAL.fullmatch(first[4:]):
        raise BadRequest(
            f"first line {first[:40]!r} is not 'old <size>' (decimal, no leading zeros)"
        )
    old_size = int(first[4:])
    if old_size > 2**64 - 1:
        raise BadRequest(f"old size {old_size} is larger than 2^64-1")
    proof_lines = lines[1:]
    if len(proof_lines) > MAX_PROOF_LINES:
        raise BadRequest(f"{len(proof_lines)} proof lines, more than {MAX_PROOF_LINES}")
    proof = []
    for number, line in enumerate(proof_lines, start=1):
        try:
            value = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError) as e:
            raise BadRequest(f"proof line {number} is not base64") from e
        if len(value) != HASH_SIZE or base64.b64encode(value).decode("ascii") != line:
            raise BadRequest(f"proof line {number} is not one canonical base64 SHA-256 hash")
        proof.append(value)
    if not note:
        raise BadRequest("request has no checkpoint after the empty line")
    return AddCheckpoint(old_size=old_size, proof=tuple(proof), note=note)


def encode_size(size: int) -> bytes:
    return f"{size}\n".encode("ascii")


def parse_size(body: bytes) -> int:
    """The witness's known size from a 409 body."""
    text = body.decode("ascii", "replace")
    if not text.endswith("\n") or not _DECIMAL.fullmatch(text[:-1]):
        raise BadRequest(f"409 body {text[:40]!r} is not '<size>\\n'")
    return int(text[:-1])


def parse_cosignature_lines(body: bytes) -> str:
    """A 200 body: note signature lines, each starting with an em dash and ending in \\n."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRequest("cosignature response is not UTF-8") from e
    if not text or not text.endswith("\n"):
        raise BadRequest("cosignature response must be newline-terminated signature lines")
    if any(not line.startswith("\u2014 ") for line in text[:-1].split("\n")):
        raise BadRequest("cosignature response has a line that is not a note signature")
    return text
