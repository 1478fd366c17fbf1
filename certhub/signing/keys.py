"""Department and log keys: Ed25519 and ECDSA P-256/SHA-256, through ``cryptography``.

A public key is parsed once (``from_pem`` / ``from_der``) and the parsed object is kept, so
verifying many envelopes never re-parses the key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from certhub.signing.errors import MalformedKey

if TYPE_CHECKING:
    import datetime

__all__ = ["Algorithm", "KeyStatus", "PrivateKey", "PublicKey", "TrustedKey", "key_id"]

_PublicKeyObject = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey
_PrivateKeyObject = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey


class Algorithm(StrEnum):
    ED25519 = "ed25519"
    ECDSA_P256_SHA256 = "ecdsa-p256-sha256"


class KeyStatus(StrEnum):
    ACTIVE = "active"
    RETIRED = "retired"
    COMPROMISED = "compromised"


def key_id(spki_der: bytes) -> str:
    """Lowercase hex SHA-256 of a DER SubjectPublicKeyInfo (the DSSE ``keyid``)."""
    return hashlib.sha256(spki_der).hexdigest()


def _algorithm_of(key: object, *, what: str) -> Algorithm:
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return Algorithm.ED25519
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        if isinstance(key.curve, ec.SECP256R1):
            return Algorithm.ECDSA_P256_SHA256
        raise MalformedKey(
            f"{what}: unsupported elliptic curve {key.curve.name}; only P-256 (secp256r1) "
            "is accepted"
        )
    raise MalformedKey(
        f"{what}: unsupported key type {type(key).__name__}; only Ed25519 and ECDSA P-256 "
        "are accepted"
    )


@dataclass(frozen=True)
class PublicKey:
    """A parsed public key. Build it with ``from_pem`` or ``from_der``."""

    algorithm: Algorithm
    key_id: str
    spki_der: bytes
    _key: _PublicKeyObject = field(compare=False, repr=False)

    @classmethod
    def _from_object(cls, key: object, *, what: str) -> PublicKey:
        algorithm = _algorithm_of(key, what=what)
        assert isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey)
        # Re-serialised so that the key id does not depend on how the input was encoded
        # (e.g. a compressed EC point): one key, one id.
        spki_der = key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return cls(algorithm=algorithm, key_id=key_id(spki_der), spki_der=spki_der, _key=key)

    @classmethod
    def from_der(cls, data: bytes) -> PublicKey:
        try:
            key = serialization.load_der_public_key(data)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise MalformedKey("public key: not a valid DER SubjectPublicKeyInfo") from exc
        return cls._from_object(key, what="public key")

    @classmethod
    def from_pem(cls, data: bytes) -> PublicKey:
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise MalformedKey("public key: not a valid PEM 'PUBLIC KEY' block") from exc
        return cls._from_object(key, what="public key")

    def to_pem(self) -> bytes:
        return self._key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def raw_ed25519(self) -> bytes:
        """The 32-byte raw Ed25519 public key (used by signed notes)."""
        if not isinstance(self._key, ed25519.Ed25519PublicKey):
            raise MalformedKey(f"key {self.key_id} is {self.algorithm}, not ed25519")
        return self._key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def verify(self, signature: bytes, message: bytes) -> bool:
        """True if ``signature`` is valid for ``message``; never raises on a bad signature."""
        try:
            if isinstance(self._key, ed25519.Ed25519PublicKey):
                self._key.verify(signature, message)
            else:
                self._key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            return False
        return True


class PrivateKey:
    """A signing key. Its repr never shows key material."""

    __slots__ = ("_algorithm", "_key", "_public_key")

    def __init__(self, key: _PrivateKeyObject) -> None:
        self._algorithm = _algorithm_of(key, what="private key")
        self._key = key
        self._public_key = PublicKey._from_object(key.public_key(), what="private key")

    @classmethod
    def generate(cls, algorithm: Algorithm) -> PrivateKey:
        if algorithm is Algorithm.ED25519:
            return cls(ed25519.Ed25519PrivateKey.generate())
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def from_pem(cls, data: bytes, password: bytes | None = None) -> PrivateKey:
        try:
            key = serialization.load_pem_private_key(data, password=password)
        except TypeError as exc:
            # cryptography signals a missing or unexpected password with TypeError.
            raise MalformedKey(f"private key: {exc}") from exc
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise MalformedKey(
                "private key: not a valid PEM private key, or the password is wrong"
            ) from exc
        _algorithm_of(key, what="private key")
        assert isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey)
        return cls(key)

    def to_pem(self, password: bytes | None = None) -> bytes:
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password)
            if password
            else serialization.NoEncryption()
        )
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )

    @property
    def algorithm(self) -> Algorithm:
        return self._algorithm

    @property
    def public_key(self) -> PublicKey:
        return self._public_key

    def sign(self, message: bytes) -> bytes:
        """Ed25519 signature, or DER-encoded ECDSA P-256 signature over SHA-256(message)."""
        if isinstance(self._key, ed25519.Ed25519PrivateKey):
            return self._key.sign(message)
        return self._key.sign(message, ec.ECDSA(hashes.SHA256()))

    def __repr__(self) -> str:
        return (
            f"PrivateKey(algorithm={self._algorithm.value!r}, key_id={self._public_key.key_id!r})"
        )


@dataclass(frozen=True)
class TrustedKey:
    """A public key from the registry, with its owner, validity window and status."""

    public_key: PublicKey
    owner: str
    not_before: datetime.date
    not_after: datetime.date | None
    status: KeyStatus

    def unusable_reason(self, signed_on: datetime.date) -> str | None:
        """None if this key may verify something signed on ``signed_on``, else why not.

        Retired keys keep verifying what was signed inside their window, so that a
        department can rotate keys without re-signing every certificate it issued.
        """
        kid = self.public_key.key_id
        if self.status is KeyStatus.COMPROMISED:
            return f"key {kid} is compromised"
        if signed_on < self.not_before:
            return (
                f"key {kid} is not valid until {self.not_before.isoformat()}, "
                f"but the payload was signed on {signed_on.isoformat()}"
            )
        if self.not_after is not None and signed_on > self.not_after:
            return (
                f"key {kid} expired after {self.not_after.isoformat()} (its last valid day), "
                f"but the payload was signed on {signed_on.isoformat()}"
            )
        return None
