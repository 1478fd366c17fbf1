"""The credential and status-list documents, their URLs and their JWT signatures, with no
database: what a verifier reads.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from certhub.hub.domain.status import CST
from certhub.hub.errors import NotFound
from certhub.signing import PrivateKey, PublicKey, parse_envelope

VC_CONTEXT = "https://www.w3.org/ns/credentials/v2"
# VC-JOSE-COSE §3.1.1: the JOSE header's typ for a credential secured as a JWT.
CREDENTIAL_TYP = "vc+jwt"
CREDENTIAL_MEDIA_TYPE = "application/vc+jwt"
# W3C Bitstring Status List §2.1: "a minimum length of 131,072 (16KB) ... for herd privacy".
STATUS_LIST_SIZE = 131_072


class Purpose(StrEnum):
    """The two lists every entry is in (at the same index): revocation is final (the
    department revoked the certificate); suspension is while the department key that signed
    it is marked compromised, which an operator can undo (``registry apply --trust-again``)."""

    REVOCATION = "revocation"
    SUSPENSION = "suspension"


# Verifiers may cache a status list this long (validUntil of the status list credential).
STATUS_LIST_VALIDITY = dt.timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class StatusEntry:
    list_number: int
    index: int


def issuer_url(origin: str) -> str:
    """The hub's issuer id: its audit log origin as an https URL (origins are schema-less
    URLs by convention, c2sp.org/tlog-checkpoint)."""
    return origin if "://" in origin else f"https://{origin}"


def status_list_url(issuer: str, list_number: int, purpose: Purpose = Purpose.REVOCATION) -> str:
    """``/status/N`` for revocation, ``/status/N/suspension`` for suspension."""
    base = f"{issuer}/status/{list_number}"
    return base if purpose is Purpose.REVOCATION else f"{base}/{purpose}"


def key_url(issuer: str, public_key: PublicKey) -> str:
    return f"{issuer}/credentials/jwks.json#{public_key.key_id}"


def credential(
    *,
    envelope: bytes,
    department_key_id: str,
    issuer: str,
    status: StatusEntry,
    issuer_names: Mapping[str, str],
) -> dict[str, Any]:
    """The unsecured credential (the JWT claims set) for a stored certificate envelope."""
    payload = json.loads(parse_envelope(envelope).payload)
    holder = payload["holder"]
    subject: dict[str, Any] = {
        "type": "ElectronicCertificate",
        "certificateId": payload["certificate_id"],
        "typeCode": payload["type_code"],
        "name": payload["name"],
        "kind": payload["kind"],
        "number": payload["number"],
        "holder": {"idType": holder["id_type"], "id": holder["id"], "name": holder["name"]},
        "issuedBy": {
            "code": payload["issuer"]["code"],
            "name": issuer_names.get(payload["issuer"]["code"], payload["issuer"]["name"]),
        },
        "issuedOn": payload["issued_on"],
        "version": payload["version"],
        "fields": payload.get("fields") or {},
    }
    document: dict[str, Any] = {
        "@context": [VC_CONTEXT],
        "id": f"urn:uuid:{uuid.uuid4()}",
        "type": ["VerifiableCredential", "ElectronicCertificateCredential"],
        "name": payload["name"],
        "issuer": issuer,
        "validFrom": _start_of(payload["valid_from"]),
        "credentialSubject": subject,
        "credentialStatus": [
            {
                "id": f"{status_list_url(issuer, status.list_number, purpose)}#{status.index}",
                "type": "BitstringStatusListEntry",
                "statusPurpose": str(purpose),
                "statusListIndex": str(status.index),
                "statusListCredential": status_list_url(issuer, status.list_number, purpose),
            }
            for purpose in Purpose
        ],
        "evidence": [
            {
                "type": ["DsseEnvelopeEvidence"],
                "description": "the department-signed original (DSSE envelope) this "
                "credential attests",
                "payloadType": parse_envelope(envelope).payload_type,
                "envelopeDigest": "sha256:" + hashlib.sha256(envelope).hexdigest(),
                "departmentCode": payload["issuer"]["code"],
                "departmentKeyId": department_key_id,
            }
        ],
    }
    if payload.get("valid_until"):
        document["validUntil"] = _end_of(payload["valid_until"])
    return document


# Certificates' dates are Chinese civil dates: a credential is in force from the start of
# valid_from to the end of valid_until in China Standard Time.
def _start_of(day: str) -> str:
    return dt.datetime.combine(dt.date.fromisoformat(day), dt.time(), CST).isoformat()


def _end_of(day: str) -> str:
    return dt.datetime.combine(dt.date.fromisoformat(day), dt.time(23, 59, 59), CST).isoformat()


def sign_jwt(key: PrivateKey, claims: Mapping[str, Any], *, issuer: str) -> str:
    """A compact JWS (RFC 7515) of ``claims`` with EdDSA (RFC 8037), typ ``vc+jwt``."""
    header = {"alg": "EdDSA", "typ": CREDENTIAL_TYP, "kid": key_url(issuer, key.public_key)}
    signing_input = f"{_b64(_json(header))}.{_b64(_json(claims))}"
    return f"{signing_input}.{_b64(key.sign(signing_input.encode('ascii')))}"


def jwks(public_key: PublicKey, *, issuer: str) -> dict[str, Any]:
    """The hub's attestation key as a JWK Set (RFC 7517, OKP Ed25519: RFC 8037)."""
    return {
        "keys": [
            {
                "kty": "OKP",
                "crv": "Ed25519",
                "x": _b64(public_key.raw_ed25519()),
                "kid": key_url(issuer, public_key),
                "alg": "EdDSA",
                "use": "sig",
            }
        ]
    }


def encode_list(indices: list[int]) -> str:
    """Multibase base64url (no padding) of the GZIP-compressed bitstring; index 0 is the
    left-most bit of the first byte (Bitstring Status List §3.1)."""
    bits = bytearray(STATUS_LIST_SIZE // 8)
    for index in indices:
        bits[index // 8] |= 0x80 >> (index % 8)
    return "u" + _b64(gzip.compress(bytes(bits), mtime=0))


def status_list_credential(
    key: PrivateKey,
    *,
    issuer: str,
    list_number: int,
    purpose: Purpose,
    indices: list[int],
    now: dt.datetime,
) -> str:
    url = status_list_url(issuer, list_number, purpose)
    claims = {
        "@context": [VC_CONTEXT],
        "id": url,
        "type": ["VerifiableCredential", "BitstringStatusListCredential"],
        "issuer": issuer,
        "validFrom": now.replace(microsecond=0).isoformat(),
        "validUntil": (now + STATUS_LIST_VALIDITY).replace(microsecond=0).isoformat(),
        "credentialSubject": {
            "id": f"{url}#list",
            "type": "BitstringStatusList",
            "statusPurpose": str(purpose),
            "encodedList": encode_list(indices),
        },
    }
    return sign_jwt(key, claims, issuer=issuer)


def no_such_list(list_number: int) -> NotFound:
    return NotFound(f"status list {list_number} does not exist", reason="NO_SUCH_STATUS_LIST")


def _json(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")
