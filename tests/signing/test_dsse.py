from __future__ import annotations

import base64
import contextlib
import datetime
import itertools
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from certhub.signing.dsse import (
    CERTIFICATE_PAYLOAD_TYPE,
    MAX_ENVELOPE_BYTES,
    MAX_SIGNATURES,
    REVOCATION_PAYLOAD_TYPE,
    Envelope,
    Signature,
    pae,
    parse_envelope,
    sign_envelope,
    verify_envelope,
)
from certhub.signing.errors import MalformedEnvelope, SigningError
from certhub.signing.keys import Algorithm, KeyStatus, PrivateKey, TrustedKey

MakeTrusted = Callable[..., TrustedKey]
PAYLOAD = b'{"certificate_id":"1.2.156.3005.2.x","version":1}'


def test_pae_known_answer() -> None:
    assert (
        pae("http://example.com/HelloWorld", b"hello world")
        == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    assert pae("", b"") == b"DSSEv1 0  0 "


def test_pae_counts_utf8_bytes() -> None:
    assert pae("证照", b"\xe4\xb8\xad") == "DSSEv1 6 证照 3 中".encode()


def _envelope_json(**overrides: Any) -> bytes:
    document: dict[str, Any] = {
        "payloadType": CERTIFICATE_PAYLOAD_TYPE,
        "payload": base64.b64encode(PAYLOAD).decode(),
        "signatures": [{"keyid": "ab" * 32, "sig": base64.b64encode(b"s" * 64).decode()}],
    }
    for key, value in overrides.items():
        if value is None:
            del document[key]
        else:
            document[key] = value
    return json.dumps(document).encode()


def test_round_trip(private_key: PrivateKey) -> None:
    envelope = sign_envelope(CERTIFICATE_PAYLOAD_TYPE, PAYLOAD, [private_key])
    assert envelope.signatures[0].keyid == private_key.public_key.key_id
    parsed = parse_envelope(envelope.to_json())
    assert parsed == envelope
    assert parsed.to_json() == envelope.to_json()


def test_signature_is_over_pae(private_key: PrivateKey) -> None:
    envelope = sign_envelope(REVOCATION_PAYLOAD_TYPE, PAYLOAD, [private_key])
    sig = envelope.signatures[0].sig
    public = private_key.public_key
    assert public.verify(sig, pae(REVOCATION_PAYLOAD_TYPE, PAYLOAD))
    assert not public.verify(sig, PAYLOAD)


def test_to_json_is_standard_dsse(ed25519_key: PrivateKey) -> None:
    envelope = sign_envelope(CERTIFICATE_PAYLOAD_TYPE, b"\xfb\xff\xfe", [ed25519_key])
    text = envelope.to_json()
    assert b" " not in text
    document = json.loads(text)
    assert list(document) == ["payloadType", "payload", "signatures"]
    assert document["payload"] == "+//+"  # standard alphabet, padded
    assert list(document["signatures"][0]) == ["keyid", "sig"]
    assert base64.b64decode(document["signatures"][0]["sig"]) == envelope.signatures[0].sig


@pytest.mark.parametrize(
    "encode",
    [
        base64.b64encode,
        base64.urlsafe_b64encode,
        lambda b: base64.b64encode(b).rstrip(b"="),
        lambda b: base64.urlsafe_b64encode(b).rstrip(b"="),
    ],
    ids=["standard", "urlsafe", "standard-unpadded", "urlsafe-unpadded"],
)
def test_parse_accepts_every_base64_form_dsse_allows(encode: Callable[[bytes], bytes]) -> None:
    payload = b"\xfb\xff\xfe\x00ab"
    data = _envelope_json(
        payload=encode(payload).decode(),
        signatures=[{"keyid": "k", "sig": encode(b"\xff\xfe\xfd\xfc1").decode()}],
    )
    envelope = parse_envelope(data)
    assert envelope.payload == payload
    assert envelope.signatures == (Signature(keyid="k", sig=b"\xff\xfe\xfd\xfc1"),)


_GOOD_SIG = {"keyid": "k", "sig": "c2ln"}

MALFORMED: list[tuple[str, bytes, str]] = [
    ("not-utf8", b'{"payloadType": "\xff"}', "not valid UTF-8"),
    ("not-json", b"{payloadType", "not valid JSON"),
    ("empty", b"", "not valid JSON"),
    ("array", b"[]", "must be a JSON object, not list"),
    ("string", b'"x"', "must be a JSON object, not str"),
    ("no-type", _envelope_json(payloadType=None), "missing field 'payloadType'"),
    ("type-int", _envelope_json(payloadType=3), "'payloadType' of the envelope must be a string"),
    ("type-empty", _envelope_json(payloadType=""), "'payloadType' is empty"),
    ("no-payload", _envelope_json(payload=None), "missing field 'payload'"),
    ("payload-list", _envelope_json(payload=["a"]), "'payload' of the envelope must be a string"),
    ("payload-bad-char", _envelope_json(payload="ab*d"), "'payload' is not valid base64"),
    ("payload-space", _envelope_json(payload="ab cd"), "'payload' is not valid base64"),
    ("payload-newline", _envelope_json(payload="abcd\n"), "'payload' is not valid base64"),
    ("payload-mixed", _envelope_json(payload="a+b_"), "'payload' is not valid base64"),
    ("payload-length", _envelope_json(payload="abcde"), "'payload' is not valid base64"),
    ("payload-pad", _envelope_json(payload="abcde="), "'payload' is not valid base64"),
    ("payload-inner-pad", _envelope_json(payload="ab==cd=="), "'payload' is not valid base64"),
    ("payload-not-ascii", _envelope_json(payload="abé="), "'payload' is not valid base64"),
    ("no-signatures", _envelope_json(signatures=None), "missing field 'signatures'"),
    ("signatures-object", _envelope_json(signatures={}), "'signatures' must be an array"),
    ("signatures-empty", _envelope_json(signatures=[]), "'signatures' is empty"),
    ("signature-string", _envelope_json(signatures=["x"]), "signatures[0] must be an object"),
    ("no-keyid", _envelope_json(signatures=[{"sig": "c2ln"}]), "missing field 'keyid'"),
    (
        "keyid-int",
        _envelope_json(signatures=[{"keyid": 1, "sig": "c2ln"}]),
        "'keyid' of signatures[0] must be a string",
    ),
    ("keyid-empty", _envelope_json(signatures=[{"keyid": "", "sig": "c2ln"}]), "'keyid'"),
    ("no-sig", _envelope_json(signatures=[_GOOD_SIG, {"keyid": "k"}]), "signatures[1]"),
    (
        "sig-bad",
        _envelope_json(signatures=[{"keyid": "k", "sig": "!!"}]),
        "'signatures[0].sig' is not valid base64",
    ),
    ("sig-empty", _envelope_json(signatures=[{"keyid": "k", "sig": ""}]), "'sig' of signatures"),
    (
        "too-many",
        _envelope_json(signatures=[_GOOD_SIG] * (MAX_SIGNATURES + 1)),
        f"exceed the limit of {MAX_SIGNATURES}",
    ),
    ("unknown-field", _envelope_json(extra=1), "unknown field(s) 'extra'"),
    (
        "unknown-signature-field",
        _envelope_json(signatures=[{"keyid": "k", "sig": "c2ln", "cert": "x"}]),
        "unknown field(s) 'cert'",
    ),
    (
        "duplicate-member",
        b'{"payloadType":"a","payloadType":"b","payload":"","signatures":[]}',
        "'payloadType' appears more than once",
    ),
    (
        "duplicate-member-in-signature",
        _envelope_json(signatures=[{"keyid": "k", "sig": "c2ln"}]).replace(
            b'"keyid": "k"', b'"keyid": "k", "keyid": "j"'
        ),
        "'keyid' appears more than once",
    ),
    (
        # The first member that comes again is named, not the first that has a twin.
        "duplicate-members-first-repeat",
        b'{"payload":"","payloadType":"a","payloadType":"b","payload":"","signatures":[]}',
        "'payloadType' appears more than once",
    ),
    # json.loads's own refusal, kept by the decoder the parser builds once.
    ("bom", b"\xef\xbb\xbf" + _envelope_json(), "Unexpected UTF-8 BOM"),
    ("too-big", b" " * (MAX_ENVELOPE_BYTES + 1), "exceeds the limit"),
]


@pytest.mark.parametrize(
    ("data", "message"), [(d, m) for _, d, m in MALFORMED], ids=[i for i, _, _ in MALFORMED]
)
def test_malformed_envelopes(data: bytes, message: str) -> None:
    with pytest.raises(MalformedEnvelope) as info:
        parse_envelope(data)
    assert message in str(info.value)


def test_size_limit_is_checked_before_parsing() -> None:
    # Invalid UTF-8 and oversize: the size is what is reported.
    with pytest.raises(MalformedEnvelope, match="exceeds the limit"):
        parse_envelope(b"\xff" * (MAX_ENVELOPE_BYTES + 1))


def test_envelope_at_the_size_limit_parses() -> None:
    data = _envelope_json()
    padded = data[:-1] + b" " * (MAX_ENVELOPE_BYTES - len(data)) + b"}"
    assert len(padded) == MAX_ENVELOPE_BYTES
    assert parse_envelope(padded).payload == PAYLOAD


def _reference_base64(value: str) -> bytes | str:
    """The DSSE base64 rules as the parser states them (standard or URL-safe alphabet, not
    mixed, padded or not), without its shortcut for padded standard text: the decoded
    bytes, or the parser's message."""
    where = "envelope: field 'payload' is not valid base64"
    if re.fullmatch(r"[A-Za-z0-9+/]*={0,2}", value):
        standard = value
    elif re.fullmatch(r"[A-Za-z0-9\-_]*={0,2}", value):
        standard = value.replace("-", "+").replace("_", "/")
    else:
        return f"{where} (characters outside the standard or URL-safe alphabet, or a mix of both)"
    unpadded = standard.rstrip("=")
    if len(unpadded) % 4 == 1 or (unpadded != standard and len(standard) % 4 != 0):
        return f"{where} (bad length)"
    return base64.b64decode(unpadded + "=" * (-len(unpadded) % 4), validate=True)


def _parsed_payload(value: str) -> bytes | str:
    try:
        return parse_envelope(_envelope_json(payload=value)).payload
    except MalformedEnvelope as exc:
        return str(exc)


def test_strict_base64_shortcut_decides_as_the_rules() -> None:
    # parse_envelope hands text of a whole number of quads to the strict decoder first.
    # Every string of up to two quads over a character of each kind (both alphabets,
    # standard only, URL-safe only, padding), and of up to one over those and one of
    # neither, must get what the rules give it, decoded bytes or message.
    for alphabet, longest in (("A+-=", 8), ("A+-=*", 4)):
        for length in range(longest + 1):
            for chars in itertools.product(alphabet, repeat=length):
                value = "".join(chars)
                assert _parsed_payload(value) == _reference_base64(value), value


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="AZaz09+/-_=é \n", max_size=40))
def test_base64_decoding_follows_the_rules(value: str) -> None:
    assert _parsed_payload(value) == _reference_base64(value)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_parse_raises_only_malformed_envelope(data: bytes) -> None:
    with contextlib.suppress(MalformedEnvelope):
        parse_envelope(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "payloadType": json_values,
            "payload": json_values | st.text(alphabet="AZaz09+/-_=", max_size=12),
            "signatures": json_values
            | st.lists(st.dictionaries(st.sampled_from(["keyid", "sig", "x"]), json_values)),
        },
    )
)
@pytest.mark.slow
def test_parse_structured_garbage_raises_only_malformed_envelope(document: object) -> None:
    with contextlib.suppress(MalformedEnvelope):
        parse_envelope(json.dumps(document).encode())


def test_sign_envelope_refuses_bad_key_lists(ed25519_key: PrivateKey) -> None:
    with pytest.raises(SigningError, match="at least one"):
        sign_envelope(CERTIFICATE_PAYLOAD_TYPE, PAYLOAD, [])
    with pytest.raises(SigningError, match="more than once"):
        sign_envelope(CERTIFICATE_PAYLOAD_TYPE, PAYLOAD, [ed25519_key, ed25519_key])


# --- verification -----------------------------------------------------------------------------


def _verify(
    envelope: Envelope,
    keys: list[TrustedKey],
    *,
    owner: str,
    signed_on: datetime.date,
    expected_payload_type: str = CERTIFICATE_PAYLOAD_TYPE,
) -> tuple[bool, tuple[TrustedKey, ...], tuple[str, ...]]:
    result = verify_envelope(
        envelope,
        expected_payload_type=expected_payload_type,
        keys={k.public_key.key_id: k for k in keys},
        owner=owner,
        signed_on=signed_on,
    )
    return result.ok, result.verified, result.reasons


def test_verify_ok(
    private_key: PrivateKey, make_trusted: MakeTrusted, owner: str, signed_on: datetime.date
) -> None:
    trusted = make_trusted(private_key)
    envelope = parse_envelope(
        sign_envelope(CERTIFICATE_PAYLOAD_TYPE, PAYLOAD, [private_key]).to_json()
    )
    assert _verify(envelope, [trusted], owner=owner, signed_on=signed_on) == (
        True,
        (trusted,),
        (),
    )


def test_verify_two_keys_of_the_owner_during_rotation(
    ed25519_key: PrivateKey,
    ecdsa_key: PrivateKey,
    make_trusted: MakeTrusted,
    owner: str,
    signed_on: datetime.date,
) -> None:
    keys = [make_trusted(ed25519_key), make_trusted(ecdsa_key, status=KeyStatus.RETIRED)]
    envelope = sign_envelope(CERTIFICATE_PAYLOAD_TYPE, PAYLOAD, [ed25519_key, ecdsa_key])
    ok, verified, reasons = _verify(envelope, keys, owner=owner, signed_on=signed_on)
    assert ok
    assert verified == tuple(keys)
    assert reasons == ()


def _single_reason(
    envelope: Envelope,
    keys: list[TrustedKey],
    *,
    owner: str,
    signed_on: datetime.date,
    expected_payload_type: str = CERTIFICATE_PAYLOAD_TYPE,
) -> str:
    ok, _, reasons = _verify(
        envelope,
        keys,
        owner=owner,
        signed_on=signed_on,
        expected_payload_type=expected_payload_type,
    )
    assert not ok
    assert len(reasons) == 1, reasons
    return reasons[0]


def test_wrong_key(
    ed25519_key: PrivateKey, make_trusted: MakeTrusted, owner: str, signed_on: datetime.date
) -> None:
    other = PrivateKey.generate(Algorithm.ED25519)
    envelope = sign_envelope(CERTIFICATE_PAYLOAD_TYPE, PAYLOAD, [other])
    # The signer claims the trusted key's id, but signed with another key.
    forged = Envelope(
        payload_type=envelope.payload_type,
        payload=envelope.payload,
        signatures=(
            Signature(keyid=ed25519_key.public_key.key_id, sig=envelope.signatures[0].sig),
        ),
    )
    reason = _single_reason(forged, [make_trusted(ed25519_key)], owner=owner, signed_on=signed_on)
    assert "does not verify" in reason


def test_unknown_key(
    ed25519_key: PrivateKey, make_trusted: MakeTrusted, owner: str, signed_on: datetime.date
) -> None:
    other = PrivateKey.generate(Algorithm.ED25519)
    envelope = sign_envelope(CERTIFICATE_PAYLOAD_TYPE, PAYLOAD, [other])
    reason = _single_reason(envelope, [make_trusted(ed25519_key)], owner=owner, signed_on=signed_on)
    assert reason == f"signature 0: key {other.public_key.key_id} is not a known key"


def test_key_of_another_owner(
    ed25519_key: PrivateKey, make_trusted: MakeTrusted, signed_on: datetime.date
) -> None:
    envelope = sign_envelope(CERTIFICATE_PAYLOAD_TYPE, PAYLOAD, [ed25519_key])
    reason = _single_reason(
        envelope,
        [make_trusted(ed25519_key, owner="DEPT-B")],
        owner="DEPT-A",
        signed_on=signed_on,
    )
    kid = ed25519_key.public_key.key_id
    assert reason == f"signature 0: key {kid} belongs to department DEPT-B, not DEPT-A"


@pytest.mark.parametrize(
    ("settings_", "expected"),
    [
        ({"status": KeyStatus.COMPROMISED}, "is compromised"),
        (
            {"status": KeyStatus.RETIRED, "not_after": datetime.date(2024, 5, 31)},
            "expired after 2024-05-31",
        ),
        ({"not_before": datetime.date(2024, 6, 2)}, "is not valid until 2024-06-02"),
    ],
    ids=["compromised", "retired-after-not-after", "before-not-before"],
)
def test_unusable_keys(
    ed25519_key: PrivateKey,
    make_trusted: MakeTrusted,
    owner: str,
    signed_on: datetime.date,
    settings_: dict[str, Any],
    expected: str,
) -> None:
    envelope = sign_envelope(CERTIFICATE_PAYLOAD_TYPE, PAYLOAD, [ed25519_key])
    reason = _single_reason(
        envelope, [make_trusted(ed25519_key, **settings_)], owner=owner, signed_on=signed_on
    )
    assert f"key {ed25519_key.public_key.key_id} {expected}" in reason


def test_payload_type_confusion(
    ed25519_key: PrivateKey, make_trusted: MakeTrusted, owner: str, signed_on: datetime.date
) -> None:
    # A validly signed revocation must not be accepted as a certificate.
    envelope = sign_envelope(REVOCATION_PAYLOAD_TYPE, PAYLOAD, [ed25519_key])
    reason = _single_reason(envelope, [make_trusted(ed25519_key)], owner=owner, signed_on=signed_on)
    assert reason == (
        f"payload type is {REVOCATION_PAYLOAD_TYPE!r}, expected {CERTIFICATE_PAYLOAD_TYPE!r}"
    )


def test_relabelled_payload_type_does_not_verify(
    ed25519_key: PrivateKey, make_trusted: MakeTrusted, owner: str, signed_on: datetime.date
) -> None:
    envelope = sign_envelope(REVOCATION_PAYLOAD_TYPE, PAYLOAD, [ed25519_key])
    relabelled = Envelope(
        payload_type=CERTIFICATE_PAYLOAD_TYPE,
        payload=envelope.payload,
        signatures=envelope.signatures,
    )
    reason = _single_reason(
        relabelled, [make_trusted(ed25519_key)], owner=owner, signed_on=signed_on
    )
    assert "does not verify" in reason


def test_tampered_payload(
    private_key: PrivateKey, make_trusted: MakeTrusted, owner: str, signed_on: datetime.date
) -> None:
    envelope = sign_envelope(CERTIFICATE_PAYLOAD_TYPE, PAYLOAD, [private_key])
    tampered = Envelope(
        payload_type=envelope.payload_type,
        payload=PAYLOAD.replace(b'"version":1', b'"version":2'),
        signatures=envelope.signatures,
    )
    reason = _single_reason(tampered, [make_trusted(private_key)], owner=owner, signed_on=signed_on)
    assert reason == (
        f"signature 0: signature by key {private_key.public_key.key_id} does not verify "
        "(payload or signature altered)"
    )


def test_duplicate_signatures(
    ed25519_key: PrivateKey, make_trusted: MakeTrusted, owner: str, signed_on: datetime.date
) -> None:
    envelope = sign_envelope(CERTIFICATE_PAYLOAD_TYPE, PAYLOAD, [ed25519_key])
    doubled = Envelope(
        payload_type=envelope.payload_type,
        payload=envelope.payload,
        signatures=envelope.signatures * 2,
    )
    ok, verified, reasons = _verify(
        doubled, [make_trusted(ed25519_key)], owner=owner, signed_on=signed_on
    )
    assert not ok
    assert len(verified) == 1
    assert reasons == (f"signature 1: key {ed25519_key.public_key.key_id} signed more than once",)


def test_extra_unknown_signature_refuses_the_envelope(
    ed25519_key: PrivateKey, make_trusted: MakeTrusted, owner: str, signed_on: datetime.date
) -> None:
    stranger = PrivateKey.generate(Algorithm.ECDSA_P256_SHA256)
    envelope = sign_envelope(CERTIFICATE_PAYLOAD_TYPE, PAYLOAD, [ed25519_key, stranger])
    ok, verified, reasons = _verify(
        envelope, [make_trusted(ed25519_key)], owner=owner, signed_on=signed_on
    )
    assert not ok
    assert verified == (make_trusted(ed25519_key),)
    assert reasons == (f"signature 1: key {stranger.public_key.key_id} is not a known key",)


def test_extra_signature_by_another_department_refuses_the_envelope(
    ed25519_key: PrivateKey,
    ecdsa_key: PrivateKey,
    make_trusted: MakeTrusted,
    owner: str,
    signed_on: datetime.date,
) -> None:
    envelope = sign_envelope(CERTIFICATE_PAYLOAD_TYPE, PAYLOAD, [ed25519_key, ecdsa_key])
    keys = [make_trusted(ed25519_key), make_trusted(ecdsa_key, owner="OTHER")]
    ok, _, reasons = _verify(envelope, keys, owner=owner, signed_on=signed_on)
    assert not ok
    assert reasons == (
        f"signature 1: key {ecdsa_key.public_key.key_id} belongs to department OTHER, not {owner}",
    )


def test_no_signatures_is_not_ok(owner: str, signed_on: datetime.date) -> None:
    envelope = Envelope(payload_type=CERTIFICATE_PAYLOAD_TYPE, payload=PAYLOAD, signatures=())
    ok, verified, reasons = _verify(envelope, [], owner=owner, signed_on=signed_on)
    assert (ok, verified, reasons) == (False, (), ("envelope has no signatures",))


def test_garbage_signature_never_raises(
    private_key: PrivateKey, make_trusted: MakeTrusted, owner: str, signed_on: datetime.date
) -> None:
    envelope = Envelope(
        payload_type=CERTIFICATE_PAYLOAD_TYPE,
        payload=PAYLOAD,
        signatures=(Signature(keyid=private_key.public_key.key_id, sig=b"\x30\x02\x01"),),
    )
    reason = _single_reason(envelope, [make_trusted(private_key)], owner=owner, signed_on=signed_on)
    assert "does not verify" in reason
