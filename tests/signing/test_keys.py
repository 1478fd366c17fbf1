from __future__ import annotations

import datetime
import hashlib
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from certhub.signing.errors import MalformedKey
from certhub.signing.keys import Algorithm, KeyStatus, PrivateKey, PublicKey, TrustedKey, key_id

MakeTrusted = Callable[..., TrustedKey]


def test_key_id_is_hex_sha256_of_spki(private_key: PrivateKey) -> None:
    public = private_key.public_key
    assert public.key_id == hashlib.sha256(public.spki_der).hexdigest()
    assert key_id(public.spki_der) == public.key_id
    assert len(public.key_id) == 64
    assert public.key_id == public.key_id.lower()


def test_public_key_pem_and_der_round_trip(private_key: PrivateKey) -> None:
    public = private_key.public_key
    from_pem = PublicKey.from_pem(public.to_pem())
    from_der = PublicKey.from_der(public.spki_der)
    assert from_pem == public == from_der
    assert from_pem.algorithm is private_key.algorithm
    assert public.to_pem().startswith(b"-----BEGIN PUBLIC KEY-----")


def test_sign_and_verify(private_key: PrivateKey) -> None:
    signature = private_key.sign(b"message")
    public = PublicKey.from_pem(private_key.public_key.to_pem())
    assert public.verify(signature, b"message")
    assert not public.verify(signature, b"messagE")
    flipped = bytes([signature[0] ^ 1]) + signature[1:]
    assert not public.verify(flipped, b"message")


@pytest.mark.parametrize("garbage", [b"", b"\x00", b"\x30\x03\x02\x01\x01", b"x" * 200])
def test_verify_returns_false_on_garbage_signature(private_key: PrivateKey, garbage: bytes) -> None:
    assert private_key.public_key.verify(garbage, b"message") is False


def test_ecdsa_signature_is_der_over_sha256(ecdsa_key: PrivateKey) -> None:
    signature = ecdsa_key.sign(b"payload")
    assert signature[0] == 0x30  # a DER SEQUENCE, not raw r||s
    raw = serialization.load_der_public_key(ecdsa_key.public_key.spki_der)
    assert isinstance(raw, ec.EllipticCurvePublicKey)
    raw.verify(signature, b"payload", ec.ECDSA(hashes.SHA256()))  # raises if wrong


def test_compressed_point_gets_the_same_key_id(ecdsa_key: PrivateKey) -> None:
    raw = serialization.load_der_public_key(ecdsa_key.public_key.spki_der)
    assert isinstance(raw, ec.EllipticCurvePublicKey)
    compressed = raw.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )
    again = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), compressed)
    der = again.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert PublicKey.from_der(der).key_id == ecdsa_key.public_key.key_id


@pytest.mark.parametrize("data", [b"", b"not a key", b"\x30\x00"])
def test_garbage_public_keys_are_malformed(data: bytes) -> None:
    with pytest.raises(MalformedKey, match="DER"):
        PublicKey.from_der(data)
    with pytest.raises(MalformedKey, match="PEM"):
        PublicKey.from_pem(data)


def test_rsa_and_p384_are_refused() -> None:
    rsa_public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    p384_public = ec.generate_private_key(ec.SECP384R1()).public_key()
    cases: list[tuple[rsa.RSAPublicKey | ec.EllipticCurvePublicKey, str]] = [
        (rsa_public, "unsupported key type"),
        (p384_public, "secp384r1"),
    ]
    for key, message in cases:
        pem = key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        der = key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        with pytest.raises(MalformedKey, match=message):
            PublicKey.from_pem(pem)
        with pytest.raises(MalformedKey, match=message):
            PublicKey.from_der(der)


def test_private_key_pem_round_trip(private_key: PrivateKey) -> None:
    pem = private_key.to_pem()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS8
    again = PrivateKey.from_pem(pem)
    assert again.public_key == private_key.public_key
    assert again.algorithm is private_key.algorithm
    assert private_key.public_key.verify(again.sign(b"m"), b"m")


def test_private_key_with_password(ed25519_key: PrivateKey) -> None:
    pem = ed25519_key.to_pem(password=b"s3cret")
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert PrivateKey.from_pem(pem, password=b"s3cret").public_key == ed25519_key.public_key
    with pytest.raises(MalformedKey):
        PrivateKey.from_pem(pem, password=b"wrong")
    with pytest.raises(MalformedKey):
        PrivateKey.from_pem(pem)
    with pytest.raises(MalformedKey):
        PrivateKey.from_pem(ed25519_key.to_pem(), password=b"unexpected")


def test_private_key_refuses_rsa_and_garbage() -> None:
    rsa_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(MalformedKey, match="unsupported key type"):
        PrivateKey.from_pem(rsa_pem)
    with pytest.raises(MalformedKey):
        PrivateKey.from_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")


def test_private_key_repr_hides_material(ed25519_key: PrivateKey) -> None:
    text = repr(ed25519_key)
    assert ed25519_key.public_key.key_id in text
    assert "BEGIN" not in text


def test_public_key_equality_ignores_parsed_object(ed25519_key: PrivateKey) -> None:
    a = PublicKey.from_der(ed25519_key.public_key.spki_der)
    b = PublicKey.from_der(ed25519_key.public_key.spki_der)
    assert a == b
    assert hash(a) == hash(b)
    assert "_key" not in repr(a)


def test_trusted_key_usable_inside_window(
    ed25519_key: PrivateKey, make_trusted: MakeTrusted
) -> None:
    key = make_trusted(
        ed25519_key,
        not_before=datetime.date(2024, 1, 1),
        not_after=datetime.date(2024, 12, 31),
    )
    assert key.unusable_reason(datetime.date(2024, 1, 1)) is None
    assert key.unusable_reason(datetime.date(2024, 12, 31)) is None


def test_trusted_key_reasons(
    ed25519_key: PrivateKey, make_trusted: MakeTrusted, signed_on: datetime.date
) -> None:
    kid = ed25519_key.public_key.key_id
    compromised = make_trusted(ed25519_key, status=KeyStatus.COMPROMISED)
    assert compromised.unusable_reason(signed_on) == f"key {kid} is compromised"

    early = make_trusted(ed25519_key, not_before=datetime.date(2025, 1, 1))
    reason = early.unusable_reason(signed_on)
    assert reason is not None
    assert f"key {kid} is not valid until 2025-01-01" in reason

    expired = make_trusted(ed25519_key, not_after=datetime.date(2024, 5, 31))
    reason = expired.unusable_reason(signed_on)
    assert reason is not None
    assert f"key {kid} expired after 2024-05-31" in reason
    assert "2024-06-01" in reason


def test_retired_key_keeps_verifying_inside_its_window(
    ed25519_key: PrivateKey, make_trusted: MakeTrusted, signed_on: datetime.date
) -> None:
    retired = make_trusted(
        ed25519_key, status=KeyStatus.RETIRED, not_after=datetime.date(2024, 12, 31)
    )
    assert retired.unusable_reason(signed_on) is None
    assert retired.unusable_reason(datetime.date(2025, 1, 1)) is not None


def test_algorithm_values() -> None:
    assert Algorithm("ed25519") is Algorithm.ED25519
    assert Algorithm("ecdsa-p256-sha256") is Algorithm.ECDSA_P256_SHA256
    assert KeyStatus("retired") is KeyStatus.RETIRED
