from __future__ import annotations

import base64
import re

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from certhub.signing.errors import MalformedKey, MalformedNote
from certhub.signing.keys import PrivateKey
from certhub.signing.note import (
    MAX_NOTE_SIGNATURES,
    Checkpoint,
    NoteSigner,
    NoteVerifier,
    open_note,
    parse_checkpoint,
)

# Known answer from c2sp.org/signed-note and golang.org/x/mod/sumdb/note.
KNOWN_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
KNOWN_TEXT = "This is an example message.\n"
KNOWN_SIG = (
    "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM="
)
KNOWN_NOTE = f"{KNOWN_TEXT}\n\u2014 example.com/foo {KNOWN_SIG}\n"
ROOT = bytes(range(32))


@pytest.fixture
def known() -> NoteVerifier:
    return NoteVerifier.from_vkey(KNOWN_VKEY)


def test_known_answer(known: NoteVerifier) -> None:
    assert known.name == "example.com/foo"
    assert known.key_hash == bytes.fromhex("530d903a")
    assert open_note(KNOWN_NOTE, [known]) == KNOWN_TEXT
    raw = base64.b64decode(KNOWN_SIG)
    assert raw[:4] == known.key_hash
    assert known.verify(KNOWN_TEXT.encode(), raw[4:])


def test_known_answer_changed_text_fails(known: NoteVerifier) -> None:
    changed = KNOWN_NOTE.replace("example message", "example messagE")
    with pytest.raises(MalformedNote, match="does not verify"):
        open_note(changed, [known])


@pytest.mark.parametrize("bit", [32, 33, 100, 255, 400, 543])
def test_known_answer_flipped_signature_bit_fails(known: NoteVerifier, bit: int) -> None:
    raw = bytearray(base64.b64decode(KNOWN_SIG))
    raw[bit // 8] ^= 1 << (bit % 8)
    note = f"{KNOWN_TEXT}\n\u2014 example.com/foo {base64.b64encode(raw).decode()}\n"
    with pytest.raises(MalformedNote, match="does not verify"):
        open_note(note, [known])


def test_flipped_key_hash_bit_makes_the_signer_unknown(known: NoteVerifier) -> None:
    raw = bytearray(base64.b64decode(KNOWN_SIG))
    raw[0] ^= 1
    note = f"{KNOWN_TEXT}\n\u2014 example.com/foo {base64.b64encode(raw).decode()}\n"
    with pytest.raises(MalformedNote, match="no signature by a known key"):
        open_note(note, [known])


def test_sign_and_open_round_trip(ed25519_key: PrivateKey) -> None:
    signer = NoteSigner("log.certhub.example/audit", ed25519_key)
    verifier = NoteVerifier.from_vkey(signer.vkey)
    assert verifier.name == signer.name
    assert verifier.key_hash == signer.key_hash
    note = signer.sign("hello\nworld\n")
    assert note.startswith("hello\nworld\n\n\u2014 log.certhub.example/audit ")
    assert note.endswith("\n")
    assert open_note(note, [verifier]) == "hello\nworld\n"


def _key_whose_vkey_contains_plus() -> PrivateKey:
    for seed in range(256):
        key = PrivateKey(ed25519.Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32))
        if "+" in NoteSigner("n", key).vkey.split("+", 2)[2]:
            return key
    raise AssertionError("no seed gives a '+' in the base64 key")


def test_vkey_whose_base64_contains_plus() -> None:
    signer = NoteSigner("log.example", _key_whose_vkey_contains_plus())
    verifier = NoteVerifier.from_vkey(signer.vkey)
    assert verifier.key_hash == signer.key_hash
    assert open_note(signer.sign("t\n"), [verifier]) == "t\n"


def test_vkey_format(ed25519_key: PrivateKey) -> None:
    signer = NoteSigner("a.example", ed25519_key)
    name, key_hash, encoded = signer.vkey.split("+", 2)
    assert name == "a.example"
    assert key_hash == signer.key_hash.hex()
    assert base64.b64decode(encoded) == b"\x01" + ed25519_key.public_key.raw_ed25519()


def test_unknown_signers_are_ignored(ed25519_key: PrivateKey) -> None:
    ours = NoteSigner("log.example", ed25519_key)
    witness = NoteSigner("witness.example", PrivateKey.generate(ed25519_key.algorithm))
    text = "body\n"
    their_line = witness.sign(text).split("\n\n", 1)[1]
    note = ours.sign(text) + their_line
    assert open_note(note, [NoteVerifier.from_vkey(ours.vkey)]) == text
    with pytest.raises(MalformedNote, match="no signature by a known key"):
        open_note(witness.sign(text), [NoteVerifier.from_vkey(ours.vkey)])
    with pytest.raises(MalformedNote, match=r"known: none"):
        open_note(note, [])


def test_same_name_other_key_is_not_accepted(ed25519_key: PrivateKey) -> None:
    real = NoteSigner("log.example", ed25519_key)
    impostor = NoteSigner("log.example", PrivateKey.generate(ed25519_key.algorithm))
    with pytest.raises(MalformedNote, match="no signature by a known key"):
        open_note(impostor.sign("x\n"), [NoteVerifier.from_vkey(real.vkey)])


def test_signer_refuses_ecdsa_and_bad_names(ecdsa_key: PrivateKey, ed25519_key: PrivateKey) -> None:
    with pytest.raises(MalformedKey, match="ed25519"):
        NoteSigner("log.example", ecdsa_key)
    for name in ["", "a+b", "a b", "a\tb", "a\u2003b"]:
        with pytest.raises(MalformedNote, match="name"):
            NoteSigner(name, ed25519_key)


@pytest.mark.parametrize("text", ["", "no newline", "a\x00\n", "bell\x07\n"])
def test_signer_refuses_bad_text(ed25519_key: PrivateKey, text: str) -> None:
    with pytest.raises(MalformedNote, match="note text"):
        NoteSigner("log.example", ed25519_key).sign(text)


@pytest.mark.parametrize(
    ("vkey", "message"),
    [
        ("example.com/foo", "must have the form"),
        ("a+b+c+d", "8 lowercase"),
        ("a+b", "must have the form"),
        ("+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k", "name is empty"),
        ("example.com/foo+530D903A+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k", "8 lowercase"),
        ("example.com/foo+530d903b+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k", "does not match"),
        ("example.com/bar+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k", "does not match"),
        ("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2", "base64"),
        ("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k=", "base64"),
        ("example.com/foo+530d903a+AukyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k", "signature type"),
        ("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv", "29 bytes"),
    ],
)
def test_malformed_vkeys(vkey: str, message: str) -> None:
    with pytest.raises(MalformedNote, match=message):
        NoteVerifier.from_vkey(vkey)


def _line(name: str = "example.com/foo", sig: str = KNOWN_SIG) -> str:
    return f"\u2014 {name} {sig}\n"


@pytest.mark.parametrize(
    ("note", "message"),
    [
        (KNOWN_TEXT + _line(), "no blank line"),
        (KNOWN_NOTE[:-1], "must end with a newline"),
        (f"{KNOWN_TEXT}\n- example.com/foo {KNOWN_SIG}\n", "em dash"),
        (f"{KNOWN_TEXT}\n\u2014example.com/foo {KNOWN_SIG}\n", "em dash"),
        (f"{KNOWN_TEXT}\n\u2014 example.com/foo  {KNOWN_SIG}\n", "must be"),
        (f"{KNOWN_TEXT}\n\u2014 example.com/foo\n", "must be"),
        (KNOWN_TEXT + "\n" + _line(sig="!!!!"), "not valid base64"),
        (KNOWN_TEXT + "\n" + _line(sig="AAAA"), "too short"),
        (KNOWN_TEXT + "\n" + _line() + "\n", "no signature lines"),
        (KNOWN_TEXT + "\n", "no signature lines"),
        ("text\x01\n\n" + _line(), "control characters"),
        (KNOWN_TEXT + "\n" + _line() * (MAX_NOTE_SIGNATURES + 1), "more than the limit"),
    ],
)
def test_malformed_notes(known: NoteVerifier, note: str, message: str) -> None:
    with pytest.raises(MalformedNote, match=re.escape(message)):
        open_note(note, [known])


def test_text_may_contain_blank_lines(ed25519_key: PrivateKey) -> None:
    signer = NoteSigner("log.example", ed25519_key)
    text = "first\n\nsecond\n"
    assert open_note(signer.sign(text), [NoteVerifier.from_vkey(signer.vkey)]) == text


# --- checkpoints -------------------------------------------------------------------------------


def test_checkpoint_format_and_parse() -> None:
    checkpoint = Checkpoint(origin="log.certhub.example/audit", size=42, root_hash=ROOT)
    text = checkpoint.to_text()
    assert text == f"log.certhub.example/audit\n42\n{base64.b64encode(ROOT).decode()}\n"
    assert parse_checkpoint(text) == checkpoint
    assert parse_checkpoint(Checkpoint(origin="o", size=0, root_hash=ROOT).to_text()).size == 0


def test_checkpoint_extension_lines_are_ignored() -> None:
    text = Checkpoint(origin="o", size=7, root_hash=ROOT).to_text() + "ext one\next two\n"
    assert parse_checkpoint(text) == Checkpoint(origin="o", size=7, root_hash=ROOT)


def test_signed_checkpoint_end_to_end(ed25519_key: PrivateKey) -> None:
    signer = NoteSigner("log.certhub.example/audit", ed25519_key)
    checkpoint = Checkpoint(origin=signer.name, size=2**40, root_hash=ROOT)
    note = signer.sign(checkpoint.to_text())
    opened = open_note(note, [NoteVerifier.from_vkey(signer.vkey)])
    assert parse_checkpoint(opened) == checkpoint


_R = base64.b64encode(ROOT).decode()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"o\n1\n{_R}", "must end with a newline"),
        ("o\n1\n", "origin, size and root hash are required"),
        (f"\n1\n{_R}\n", "origin (line 1) is empty"),
        (f"o\n01\n{_R}\n", "leading zeros"),
        (f"o\n-1\n{_R}\n", "not a decimal"),
        (f"o\n+1\n{_R}\n", "not a decimal"),
        (f"o\n1.0\n{_R}\n", "not a decimal"),
        (f"o\n \n{_R}\n", "not a decimal"),
        (f"o\n{2**64}\n{_R}\n", "larger than 2^64-1"),
        ("o\n1\nnot base64!\n", "not valid base64"),
        (f"o\n1\n{base64.b64encode(ROOT[:31]).decode()}\n", "31 bytes, expected 32"),
        (f"o\n1\n{_R.rstrip('=')}\n", "base64"),
        (f"o\n1\n{_R}\n\next\n", "line 4 is empty"),
    ],
)
def test_malformed_checkpoints(text: str, message: str) -> None:
    with pytest.raises(MalformedNote, match=re.escape(message)):
        parse_checkpoint(text)


@pytest.mark.parametrize(
    "checkpoint",
    [
        Checkpoint(origin="", size=1, root_hash=ROOT),
        Checkpoint(origin="a\nb", size=1, root_hash=ROOT),
        Checkpoint(origin="o", size=-1, root_hash=ROOT),
        Checkpoint(origin="o", size=2**64, root_hash=ROOT),
        Checkpoint(origin="o", size=1, root_hash=ROOT[:31]),
    ],
)
def test_checkpoint_refuses_to_format_invalid_values(checkpoint: Checkpoint) -> None:
    with pytest.raises(MalformedNote):
        checkpoint.to_text()
