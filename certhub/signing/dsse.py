"""DSSE v1 envelopes (github.com/secure-systems-lab/dsse, protocol.md and envelope.md).

Signatures are over ``PAE(payloadType, payload)``; the envelope JSON is the standard one, so
any DSSE implementation can verify what the hub serves.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from certhub.signing.errors import MalformedEnvelope, SigningError

if TYPE_CHECKING:
    import datetime
    from collections.abc import Mapping, Sequence

    from certhub.signing.keys import PrivateKey, TrustedKey

__all__ = [
    "CERTIFICATE_PAYLOAD_TYPE",
    "MAX_ENVELOPE_BYTES",
    "MAX_SIGNATURES",
    "REVOCATION_PAYLOAD_TYPE",
    "Envelope",
    "Signature",
    "Verification",
    "VerifiedSignature",
    "pae",
    "parse_envelope",
    "sign_envelope",
    "verify_envelope",
]

CERTIFICATE_PAYLOAD_TYPE = "application/vnd.certhub.certificate.v1+json"
REVOCATION_PAYLOAD_TYPE = "application/vnd.certhub.revocation.v1+json"

# A certificate's JSON is a few KB; the PDF/OFD file travels separately, bound by digest.
# 1 MiB leaves two orders of magnitude of headroom and is checked before any parsing so a
# hostile client cannot make the hub decode huge JSON or base64.
MAX_ENVELOPE_BYTES = 1024 * 1024

# A department signs with one key, two during a rotation overlap. Eight bounds the
# verification work per envelope (each signature is a public-key operation) while leaving
# room for co-signing; anything above is refused before any signature is checked.
MAX_SIGNATURES = 8

_ENVELOPE_FIELDS = frozenset({"payloadType", "payload", "signatures"})
_SIGNATURE_FIELDS = frozenset({"keyid", "sig"})
# DSSE allows standard or URL-safe base64, with or without padding; nothing else.
_STANDARD_B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_URLSAFE_B64 = re.compile(r"[A-Za-z0-9\-_]*={0,2}")
# No valid base64 ends with three padding characters, but the strict decoder accepts a
# whole quad followed by "====", which the rules above refuse.
_EXCESS_PADDING = "==="


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSEv1 pre-authentication encoding: what the signatures are computed over."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(type_bytes), type_bytes, len(payload), payload)


@dataclass(frozen=True)
class Signature:
    keyid: str
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    payload_type: str
    payload: bytes
    signatures: tuple[Signature, ...]

    def to_json(self) -> bytes:
        """Compact DSSE JSON with standard (padded) base64."""
        document = {
            "payloadType": self.payload_type,
            "payload": base64.b64encode(self.payload).decode("ascii"),
            "signatures": [
                {"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode("ascii")}
                for s in self.signatures
            ],
        }
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _decode_base64(value: str, *, where: str) -> bytes:
    if len(value) % 4 == 0 and not value.endswith(_EXCESS_PADDING):
        # What signers write (standard alphabet, padded) the strict decoder checks and
        # decodes in one pass in C, where the checks below scan it twice more. On whole
        # quads it accepts nothing they refuse but the excess padding kept out above
        # (tests/signing/test_dsse.py compares the two). What it refuses (ValueError, also
        # for text that is not ASCII) goes through the checks, which say what is wrong.
        try:  # not contextlib.suppress: its object and calls cost as much as the decoding
            return binascii.a2b_base64(value, strict_mode=True)
        except ValueError:
            pass
    if _STANDARD_B64.fullmatch(value):
        standard = value
    elif _URLSAFE_B64.fullmatch(value):
        standard = value.replace("-", "+").replace("_", "/")
    else:
        raise MalformedEnvelope(
            f"envelope: field {where} is not valid base64 (characters outside the standard "
            "or URL-safe alphabet, or a mix of both)"
        )
    unpadded = standard.rstrip("=")
    if len(unpadded) % 4 == 1 or (unpadded != standard and len(standard) % 4 != 0):
        raise MalformedEnvelope(f"envelope: field {where} is not valid base64 (bad length)")
    try:
        return base64.b64decode(unpadded + "=" * (-len(unpadded) % 4), validate=True)
    except binascii.Error as exc:
        raise MalformedEnvelope(f"envelope: field {where} is not valid base64") from exc


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two parsers disagreeing on which duplicate wins is a classic signature bypass. The
    # dict is built in C; only a shorter dict (a key repeated) walks the pairs in Python, to
    # name the first key that comes again.
    result = dict(pairs)
    if len(result) == len(pairs):
        return result
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise MalformedEnvelope(f"envelope: JSON member {key!r} appears more than once")
        seen.add(key)
    raise AssertionError("a shorter dict has a repeated key")


# Built once: json.loads with a hook builds a new decoder and scanner on every call.
_DECODER = json.JSONDecoder(object_pairs_hook=_reject_duplicate_keys)
# A leading byte order mark: json.loads names it, a bare JSONDecoder says "Expecting value".
_BOM = "\ufeff"


def _decode_json(text: str) -> Any:
    if text.startswith(_BOM):
        # Left to json.loads, to refuse it with its own message.
        return json.loads(text, object_pairs_hook=_reject_duplicate_keys)
    return _DECODER.decode(text)


def _check_fields(obj: dict[str, Any], allowed: frozenset[str], *, where: str) -> None:
    if obj.keys() <= allowed:
        return  # the usual object: one set comparison in C
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise MalformedEnvelope(
            f"envelope: {where} has unknown field(s) {', '.join(repr(u) for u in unknown)}"
        )


def _string_field(obj: dict[str, Any], name: str, *, where: str) -> str:
    if name not in obj:
        raise MalformedEnvelope(f"envelope: {where} is missing field {name!r}")
    value = obj[name]
    if not isinstance(value, str):
        raise MalformedEnvelope(
            f"envelope: field {name!r} of {where} must be a string, not {type(value).__name__}"
        )
    return value


def _parse_signature(index: int, item: object) -> Signature:
    where = f"signatures[{index}]"
    if not isinstance(item, dict):
        raise MalformedEnvelope(f"envelope: {where} must be an object")
    _check_fields(item, _SIGNATURE_FIELDS, where=where)
    keyid = _string_field(item, "keyid", where=where)
    if not keyid:
        raise MalformedEnvelope(f"envelope: field 'keyid' of {where} is empty")
    sig = _decode_base64(_string_field(item, "sig", where=where), where=f"'{where}.sig'")
    if not sig:
        raise MalformedEnvelope(f"envelope: field 'sig' of {where} is empty")
    return Signature(keyid=keyid, sig=sig)


def parse_envelope(data: bytes) -> Envelope:
    """Parse DSSE envelope JSON strictly; raise ``MalformedEnvelope`` naming the problem."""
    if len(data) > MAX_ENVELOPE_BYTES:
        raise MalformedEnvelope(
            f"envelope: {len(data)} bytes exceeds the limit of {MAX_ENVELOPE_BYTES} bytes"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedEnvelope(f"envelope: not valid UTF-8 (byte {exc.start})") from exc
    try:
        document = _decode_json(text)
    except json.JSONDecodeError as exc:
        raise MalformedEnvelope(
            f"envelope: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from exc
    except RecursionError as exc:
        raise MalformedEnvelope("envelope: JSON nested too deeply") from exc
    if not isinstance(document, dict):
        raise MalformedEnvelope(
            f"envelope: top level must be a JSON object, not {type(document).__name__}"
        )
    _check_fields(document, _ENVELOPE_FIELDS, where="the envelope")
    payload_type = _string_field(document, "payloadType", where="the envelope")
    if not payload_type:
        raise MalformedEnvelope("envelope: field 'payloadType' is empty")
    payload = _decode_base64(
        _string_field(document, "payload", where="the envelope"), where="'payload'"
    )
    if "signatures" not in document:
        raise MalformedEnvelope("envelope: the envelope is missing field 'signatures'")
    raw_signatures = document["signatures"]
    if not isinstance(raw_signatures, list):
        raise MalformedEnvelope(
            f"envelope: field 'signatures' must be an array, not {type(raw_signatures).__name__}"
        )
    if not raw_signatures:
        raise MalformedEnvelope("envelope: field 'signatures' is empty; at least one is required")
    if len(raw_signatures) > MAX_SIGNATURES:
        raise MalformedEnvelope(
            f"envelope: {len(raw_signatures)} signatures exceed the limit of {MAX_SIGNATURES}"
        )
    signatures = tuple(_parse_signature(i, item) for i, item in enumerate(raw_signatures))
    return Envelope(payload_type=payload_type, payload=payload, signatures=signatures)


def sign_envelope(payload_type: str, payload: bytes, keys: Sequence[PrivateKey]) -> Envelope:
    """Sign ``PAE(payload_type, payload)`` with every key, in order."""
    if not keys:
        raise SigningError("sign_envelope: at least one signing key is required")
    if len(keys) > MAX_SIGNATURES:
        raise SigningError(
            f"sign_envelope: {len(keys)} keys exceed the limit of {MAX_SIGNATURES} signatures"
        )
    key_ids = [k.public_key.key_id for k in keys]
    if len(set(key_ids)) != len(key_ids):
        raise SigningError("sign_envelope: the same key is given more than once")
    message = pae(payload_type, payload)
    signatures = tuple(Signature(keyid=k.public_key.key_id, sig=k.sign(message)) for k in keys)
    return Envelope(payload_type=payload_type, payload=payload, signatures=signatures)


@dataclass(frozen=True)
class VerifiedSignature:
    key: TrustedKey


@dataclass(frozen=True)
class Verification:
    """The outcome of ``verify_envelope``.

    ``verified`` lists the keys whose signatures verified; ``reasons`` lists, as sentences,
    everything that makes the envelope unacceptable.
    """

    verified: tuple[TrustedKey, ...]
    reasons: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """At least one signature verified, and nothing at all was wrong.

        Any extra signature (unknown key, another department's key, a duplicate, one that
        does not verify) refuses the envelope: the hub stores envelopes exactly as received,
        so it must not store signatures it cannot vouch for.
        """
        return bool(self.verified) and not self.reasons


def verify_envelope(
    envelope: Envelope,
    *,
    expected_payload_type: str,
    keys: Mapping[str, TrustedKey],
    owner: str,
    signed_on: datetime.date,
) -> Verification:
    """Check every signature of ``envelope`` against the trusted ``keys`` of ``owner``.

    Never raises for a bad signature: every problem becomes a reason in the result.
    """
    reasons: list[str] = []
    verified: list[TrustedKey] = []
    if envelope.payload_type != expected_payload_type:
        reasons.append(
            f"payload type is {envelope.payload_type!r}, expected {expected_payload_type!r}"
        )
    if not envelope.signatures:
        reasons.append("envelope has no signatures")
    if len(envelope.signatures) > MAX_SIGNATURES:
        reasons.append(
            f"envelope has {len(envelope.signatures)} signatures, "
            f"more than the limit of {MAX_SIGNATURES}"
        )
        return Verification(verified=(), reasons=tuple(reasons))
    message = pae(envelope.payload_type, envelope.payload)
    seen: set[str] = set()
    for index, signature in enumerate(envelope.signatures):
        kid = signature.keyid
        if kid in seen:
            reasons.append(f"signature {index}: key {kid} signed more than once")
            continue
        seen.add(kid)
        trusted = keys.get(kid)
        if trusted is None or trusted.public_key.key_id != kid:
            reasons.append(f"signature {index}: key {kid} is not a known key")
            continue
        if trusted.owner != owner:
            reasons.append(
                f"signature {index}: key {kid} belongs to department {trusted.owner}, not {owner}"
            )
            continue
        unusable = trusted.unusable_reason(signed_on)
        if unusable is not None:
            reasons.append(f"signature {index}: {unusable}")
            continue
        if not trusted.public_key.verify(signature.sig, message):
            reasons.append(
                f"signature {index}: signature by key {kid} does not verify "
                "(payload or signature altered)"
            )
            continue
        verified.append(trusted)
    return Verification(verified=tuple(verified), reasons=tuple(reasons))
