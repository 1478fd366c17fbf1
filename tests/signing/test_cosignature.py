"""Witness cosignatures (c2sp.org/tlog-cosignature, Ed25519 cosignature/v1): the key id, the
signed message and the line layout are checked against the spec's formulas computed here
independently, and verification refuses what it must."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from certhub.signing import Algorithm, NoteSigner, NoteVerifier, PrivateKey
from certhub.signing.cosignature import (
    CosignatureSigner,
    CosignatureVerifier,
    cosigned_message,
    verify_cosignatures,
)
from certhub.signing.errors import MalformedKey, MalformedNote
from certhub.signing.note import Checkpoint, open_note

ORIGIN = "certhub.example.gov.cn/gulou"
WITNESS = "witness.fj-data-bureau.gov.cn/w1"
TIMESTAMP = 1_764_806_400  # 2025-12-04T00:00:00Z


@pytest.fixture(scope="module")
def log() -> NoteSigner:
    return NoteSigner(ORIGIN, PrivateKey.generate(Algorithm.ED25519))


@pytest.fixture(scope="module")
def witness_key() -> PrivateKey:
    return PrivateKey.generate(Algorithm.ED25519)


@pytest.fixture(scope="module")
def witness(witness_key: PrivateKey) -> CosignatureSigner:
    return CosignatureSigner(WITNESS, witness_key)


def _checkpoint_text(size: int = 20852163) -> str:
    return Checkpoint(origin=ORIGIN, size=size, root_hash=bytes(range(32))).to_text()


def test_key_id_and_vkey_follow_the_spec(
    witness: CosignatureSigner, witness_key: PrivateKey
) -> None:
    public = witness_key.public_key.raw_ed25519()
    expected = hashlib.sha256(WITNESS.encode() + b"\n" + b"\x04" + public).digest()[:4]
    assert witness.key_id == expected
    name, key_id, encoded = witness.vkey.split("+", 2)
    assert (name, key_id) == (WITNESS, expected.hex())
    assert base64.b64decode(encoded) == b"\x04" + public
    assert CosignatureVerifier.from_vkey(witness.vkey).key_id == expected


def test_line_layout_and_message_follow_the_spec(
    witness: CosignatureSigner, witness_key: PrivateKey
) -> None:
    text = _checkpoint_text()
    line = witness.cosign(text, TIMESTAMP)
    assert line.startswith(f"\u2014 {WITNESS} ")
    assert line.endswith("\n")
    raw = base64.b64decode(line.rstrip("\n").split(" ")[2])
    assert len(raw) == 4 + 8 + 64
    assert raw[:4] == witness.key_id
    assert int.from_bytes(raw[4:12], "big") == TIMESTAMP
    message = f"cosignature/v1\ntime {TIMESTAMP}\n{text}".encode()
    assert cosigned_message(text, TIMESTAMP) == message
    public = ed25519.Ed25519PublicKey.from_public_bytes(witness_key.public_key.raw_ed25519())
    public.verify(raw[12:], message)  # raises if the signed message differs from the spec's


def test_cosigned_checkpoint_verifies_for_the_log_and_the_witness(
    log: NoteSigner, witness: CosignatureSigner
) -> None:
    text = _checkpoint_text()
    note = log.sign(text) + witness.cosign(text, TIMESTAMP)
    verifier = CosignatureVerifier.from_vkey(witness.vkey)
    [cosigned] = verify_cosignatures(note, [verifier])
    assert (cosigned.name, cosigned.timestamp) == (WITNESS, TIMESTAMP)
    # The log's own verification ignores the witness line (an unknown key to it).
    assert open_note(note, [NoteVerifier.from_vkey(log.vkey)]) == text


def test_a_cosignature_on_another_checkpoint_or_time_fails(
    log: NoteSigner, witness: CosignatureSigner
) -> None:
    verifier = CosignatureVerifier.from_vkey(witness.vkey)
    other = witness.cosign(_checkpoint_text(size=5), TIMESTAMP)
    text = _checkpoint_text()
    with pytest.raises(MalformedNote, match="does not verify"):
        verify_cosignatures(log.sign(text) + other, [verifier])
    # Changing the timestamp bytes breaks the signature too: the time is signed.
    line = witness.cosign(text, TIMESTAMP)
    raw = bytearray(base64.b64decode(line.rstrip("\n").split(" ")[2]))
    raw[11] ^= 1
    forged = f"\u2014 {WITNESS} {base64.b64encode(bytes(raw)).decode()}\n"
    with pytest.raises(MalformedNote, match="does not verify"):
        verify_cosignatures(log.sign(text) + forged, [verifier])


def test_unknown_witnesses_and_the_log_signature_count_for_nothing(
    log: NoteSigner, witness: CosignatureSigner
) -> None:
    text = _checkpoint_text()
    stranger = CosignatureSigner(WITNESS, PrivateKey.generate(Algorithm.ED25519))
    note = log.sign(text) + stranger.cosign(text, TIMESTAMP)
    assert verify_cosignatures(note, [CosignatureVerifier.from_vkey(witness.vkey)]) == []


def test_a_note_signature_is_not_a_cosignature(witness_key: PrivateKey) -> None:
    # The same key as an ordinary note signer (type 0x01) has another key id: its line is
    # not taken for a cosignature, and a 0x01 vkey is refused as a witness key.
    text = _checkpoint_text()
    plain = NoteSigner(WITNESS, witness_key)
    witness = CosignatureSigner(WITNESS, witness_key)
    assert plain.key_hash != witness.key_id
    note = plain.sign(text)
    assert verify_cosignatures(note, [CosignatureVerifier.from_vkey(witness.vkey)]) == []
    with pytest.raises(MalformedNote, match="not 04"):
        CosignatureVerifier.from_vkey(plain.vkey)


def test_bad_keys_and_timestamps_are_refused(witness: CosignatureSigner) -> None:
    with pytest.raises(MalformedKey):
        CosignatureSigner(WITNESS, PrivateKey.generate(Algorithm.ECDSA_P256_SHA256))
    with pytest.raises(MalformedNote):
        witness.cosign(_checkpoint_text(), 2**63)
    name, _, encoded = witness.vkey.split("+", 2)
    with pytest.raises(MalformedNote, match="does not match"):
        CosignatureVerifier.from_vkey(f"{name}+00000000+{encoded}")
    with pytest.raises(MalformedNote):
        CosignatureVerifier.from_vkey("no-plus-signs")
