"""Issue 6 item 2: hypothesis-driven hostile input for every RPC, over real mTLS.

For each RPC: random and mutated messages, oversized fields, deep and huge JSON inside validly
signed envelopes, invalid UTF-8 (on the wire, where the protobuf library will not produce it),
huge page sizes and indices. The properties: every answer is OK or one of the status codes
documented for that RPC (never INTERNAL or UNKNOWN), and a refused call changes nothing stored
(certificates, revocations, attachments, cases).

One hub per module and database; example counts are modest for a 2-core CI machine.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.hubs import RunningHub
from support.probes import payload_dict, sign_bytes, sign_dict, snapshot
from support.shared_hub import DATABASES, next_serial, serving_hub

from certhub.core.rpc.channel import MAX_MESSAGE_BYTES
from certhub.core.rpc.client import HubClient, HubClientError
from certhub.hub.demo.world import (
    CITIZEN_APP,
    DemoWorld,
    certificate_payload,
    enterprise,
    sign_certificate,
    sign_revocation,
)
from certhub.signing import CERTIFICATE_PAYLOAD_TYPE, MAX_ENVELOPE_BYTES, REVOCATION_PAYLOAD_TYPE
from certhub.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    citizen_pb2,
    common_pb2,
    directory_pb2,
    ingest_pb2,
    intake_pb2,
)

DEPARTMENT = "gulou-amr-adapter"
WINDOW = "gulou-service-centre"
AUDITOR = "gulou-audit-office"
APP = CITIZEN_APP

# What each RPC may answer besides OK (DESIGN.md "Errors", API.md, audit.proto).
PUSH_CODES = {
    "INVALID_ARGUMENT",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "FAILED_PRECONDITION",
    "RESOURCE_EXHAUSTED",
}
REVOKE_CODES = {"INVALID_ARGUMENT", "NOT_FOUND", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED"}
INTAKE_CODES = {"INVALID_ARGUMENT", "NOT_FOUND", "PERMISSION_DENIED"}
VERIFY_CODES = {"INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"}
DIRECTORY_CODES = {"INVALID_ARGUMENT", "NOT_FOUND"}
AUDIT_CODES = {"INVALID_ARGUMENT", "OUT_OF_RANGE", "NOT_FOUND", "PERMISSION_DENIED"}
# CitizenService (citizen.proto): bad applicant, page size or token.
CITIZEN_CODES = {"INVALID_ARGUMENT"}
DECIDE_CODES = {"INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION"}
PRESENT_CODES = {"INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION"}
REDEEM_CODES = {"INVALID_ARGUMENT", "NOT_FOUND", "PERMISSION_DENIED", "FAILED_PRECONDITION"}

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FEW = settings(FUZZ, max_examples=25)

UINT64_MAX = 2**64 - 1
INT32 = st.integers(-(2**31), 2**31 - 1)
UINT32 = st.integers(0, 2**32 - 1)
UINT64 = st.one_of(st.integers(0, 64), st.integers(0, UINT64_MAX), st.just(UINT64_MAX))


# --- strategies ---------------------------------------------------------------------------------

_SEEDS = ["x", "中", "\x00", "\u202e", "\U0001f600", " ", "\n", "9"]


def long_text(max_repeat: int = 100_000) -> st.SearchStrategy[str]:
    """Very long strings without making hypothesis generate them character by character."""
    return st.builds(lambda s, n: s * n, st.sampled_from(_SEEDS), st.integers(0, max_repeat))


TEXT = st.one_of(
    st.text(max_size=80),
    long_text(),
    st.sampled_from(["", " ", "\x00", "-1"]),
    # Short strings dense in what databases and protocols choke on (PostgreSQL rejects NUL).
    st.text(alphabet="\x00a中\u202e\n%", max_size=6),
)

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)


@st.composite
def deep_json(draw: st.DrawFn) -> bytes:
    depth = draw(st.integers(1, 200_000))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
    return (opener * depth + "1" + closer * depth).encode()


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    """``original`` with one structural mutation: flip, cut, insert, duplicate, splice."""
    data = bytearray(original)
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "duplicate", "delete", "splice"]))
    at = draw(st.integers(0, max(len(data) - 1, 0)))
    if kind == "flip":
        data[at] ^= draw(st.integers(1, 255))
    elif kind == "truncate":
        del data[at:]
    elif kind == "insert":
        data[at:at] = draw(st.binary(min_size=1, max_size=16))
    elif kind == "duplicate":
        data[at:at] = data[at : at + draw(st.integers(1, 64))]
    elif kind == "delete":
        del data[at : at + draw(st.integers(1, 64))]
    else:
        data[at:at] = b"\xff\xfe\xc0\x80"  # invalid UTF-8
    return bytes(data)


def unsigned_envelope(payload: bytes) -> bytes:
    return json.dumps(
        {
            "payloadType": CERTIFICATE_PAYLOAD_TYPE,
            "payload": base64.b64encode(payload).decode(),
            "signatures": [],
        }
    ).encode()


# --- the hub and its callers ------------------------------------------------------------------


class Fuzzed:
    """One hub, long-lived clients, and valid material to mutate."""

    def __init__(self, running: RunningHub, world: DemoWorld) -> None:
        self.running = running
        self.world = world
        self.amr = world.department_by_name("市场监督管理局")
        self.licence_type = world.type_by_name("营业执照").code
        self.items = list(world.items)
        self._clients: dict[str, HubClient] = {}
        self.holder = enterprise(77)
        self.stored = certificate_payload(world, self.licence_type, self.holder, serial=1)
        self.revoked = certificate_payload(world, self.licence_type, self.holder, serial=2)
        self.valid_envelope = sign_certificate(self.stored, [self.amr.key])
        department = self.client(DEPARTMENT)
        department.push(self.valid_envelope)
        department.push(sign_certificate(self.revoked, [self.amr.key]))
        department.revoke(sign_revocation(self.revoked.certificate_id, self.amr.key))

    def client(self, principal: str) -> HubClient:
        if principal not in self._clients:
            self._clients[principal] = self.running.client(principal)
        return self._clients[principal]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()

    def fresh_payload(self) -> dict[str, Any]:
        payload = certificate_payload(
            self.world, self.licence_type, enterprise(78), serial=next_serial()
        )
        return payload_dict(payload)

    def answer(self, allowed: set[str], call: Callable[[], object]) -> str:
        """Run ``call``; its status must be OK or in ``allowed``; a refusal stores nothing."""
        before = snapshot(self.running.engine)
        try:
            call()
        except HubClientError as error:
            refusal: HubClientError | None = error
        else:
            return "OK"
        assert refusal is not None
        code = refusal.code.name
        assert code in allowed, f"{code} is not documented here: {refusal.message[:300]}"
        assert snapshot(self.running.engine) == before, f"refused ({code}) but changed data"
        return code

    def raw(self, principal: str, method: str, data: bytes) -> Callable[[], object]:
        """Send ``data`` as the request's wire bytes (what a broken client could send)."""
        client = self.client(principal)
        stub = client.channel.unary_unary(
            method, request_serializer=lambda b: b, response_deserializer=lambda b: b
        )

        def call() -> object:
            try:
                return stub(data, timeout=client.timeout)
            except grpc.RpcError as error:
                raise HubClientError(error.details() or "", code=error.code()) from error

        return call


@pytest.fixture(scope="module", params=DATABASES)
def fz(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, world: DemoWorld
) -> Iterator[Fuzzed]:
    root: Path = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    with serving_hub(root, request.param, world) as running:
        fuzzed = Fuzzed(running, world)
        try:
            yield fuzzed
        finally:
            fuzzed.close()


# --- IngestService ------------------------------------------------------------------------------


@FUZZ
@given(envelope=st.binary(max_size=2048), attachment=st.binary(max_size=64), ref=TEXT)
def test_push_random_bytes(fz: Fuzzed, envelope: bytes, attachment: bytes, ref: str) -> None:
    client = fz.client(DEPARTMENT)
    code = fz.answer(
        PUSH_CODES, lambda: client.push(envelope, attachment=attachment, client_ref=ref)
    )
    assert code != "OK"


@FUZZ
@given(data=st.data())
def test_push_mutated_valid_envelope(fz: Fuzzed, data: st.DataObject) -> None:
    envelope = data.draw(mutated(fz.valid_envelope))
    client = fz.client(DEPARTMENT)
    fz.answer(PUSH_CODES, lambda: client.push(envelope))


@FUZZ
@given(
    payload=st.one_of(
        deep_json(),
        JSON_VALUES.map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=256),
        st.builds(lambda n: b'{"a": "' + b"x" * n + b'"}', st.integers(0, MAX_ENVELOPE_BYTES)),
    )
)
def test_push_signed_hostile_payloads(fz: Fuzzed, payload: bytes) -> None:
    """The signature is valid: everything else about the payload is hostile."""
    envelope = sign_bytes(payload, [fz.amr.key])
    client = fz.client(DEPARTMENT)
    code = fz.answer(PUSH_CODES, lambda: client.push(envelope))
    assert code in {"INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"}


PAYLOAD_KEYS = (
    "certificate_id",
    "type_code",
    "name",
    "kind",
    "number",
    "holder",
    "issuer",
    "issued_on",
    "valid_from",
    "valid_until",
    "version",
    "fields",
    "attachment",
    "extra",
)


@FUZZ
@given(
    key=st.sampled_from(PAYLOAD_KEYS),
    value=st.one_of(JSON_VALUES, long_text(200_000)),
    drop=st.booleans(),
)
def test_push_signed_payload_with_one_hostile_field(
    fz: Fuzzed, key: str, value: object, drop: bool
) -> None:
    document = fz.fresh_payload()
    if drop:
        document.pop(key, None)
    else:
        document[key] = value
    envelope = sign_dict(document, [fz.amr.key])
    client = fz.client(DEPARTMENT)
    fz.answer(PUSH_CODES, lambda: client.push(envelope))


@FEW
@given(items=st.lists(st.one_of(st.binary(max_size=300), st.just(b"")), min_size=1, max_size=6))
def test_push_stream_of_garbage_answers_every_item(fz: Fuzzed, items: list[bytes]) -> None:
    requests = [ingest_pb2.PushRequest(envelope=e, client_ref=f"r{n}") for n, e in enumerate(items)]
    before = snapshot(fz.running.engine)
    results = list(fz.client(DEPARTMENT).push_stream(requests, timeout=30))
    assert [r.client_ref for r in results] == [r.client_ref for r in requests]
    for r in results:
        assert r.outcome == ingest_pb2.REJECTED
        assert grpc.StatusCode.INVALID_ARGUMENT.value[0] == r.code or r.code in (
            grpc.StatusCode.RESOURCE_EXHAUSTED.value[0],
            grpc.StatusCode.PERMISSION_DENIED.value[0],
        )
    assert snapshot(fz.running.engine) == before


@FUZZ
@given(
    revocation=st.one_of(
        st.binary(max_size=1024),
        st.fixed_dictionaries(
            {},
            optional={
                "certificate_id": st.one_of(TEXT, JSON_VALUES),
                "reason": st.one_of(TEXT, JSON_VALUES),
                "revoked_at": st.one_of(TEXT, JSON_VALUES),
                "extra": JSON_VALUES,
            },
        ),
        deep_json(),
    )
)
def test_revoke_hostile(fz: Fuzzed, revocation: bytes | dict[str, object]) -> None:
    if isinstance(revocation, dict):
        envelope = sign_dict(revocation, [fz.amr.key], payload_type=REVOCATION_PAYLOAD_TYPE)
    elif revocation.startswith((b"[", b"{")):
        envelope = sign_bytes(revocation, [fz.amr.key], payload_type=REVOCATION_PAYLOAD_TYPE)
    else:
        envelope = revocation
    client = fz.client(DEPARTMENT)
    fz.answer(REVOKE_CODES, lambda: client.revoke(envelope))


@FEW
@given(data=st.data())
def test_revoke_mutated_valid_revocation(fz: Fuzzed, data: st.DataObject) -> None:
    valid = sign_revocation(fz.stored.certificate_id, fz.amr.key)
    envelope = data.draw(mutated(valid))
    client = fz.client(DEPARTMENT)
    fz.answer(REVOKE_CODES, lambda: client.revoke(envelope))
    # Whatever happened, the stored licence was not revoked by a mutated envelope that does
    # not verify; if the mutation kept it valid (e.g. whitespace), revocation is legitimate.


# --- IntakeService ------------------------------------------------------------------------------


def holders() -> st.SearchStrategy[common_pb2.Holder]:
    return st.builds(
        lambda t, i: common_pb2.Holder(id_type=t, id=i),
        st.one_of(st.sampled_from([0, 1, 2, 3, 4]), INT32),
        st.one_of(TEXT, st.just(enterprise(77).holder.id)),
    )


@FUZZ
@given(holder=holders(), item=TEXT, item_index=st.integers(0, 12), case=TEXT, attach=st.booleans())
def test_fetch_hostile(
    fz: Fuzzed, holder: common_pb2.Holder, item: str, item_index: int, case: str, attach: bool
) -> None:
    code = item if item else fz.items[item_index]
    request = intake_pb2.FetchRequest(
        holder=holder, service_item_code=code, case_number=case, include_attachments=attach
    )
    client = fz.client(WINDOW)
    fz.answer(INTAKE_CODES, lambda: client.call(client.intake.FetchCertificates, request))


@FUZZ
@given(cid=st.one_of(TEXT, st.just("")), holder=holders(), case=TEXT, item_index=st.integers(0, 12))
def test_get_hostile(
    fz: Fuzzed, cid: str, holder: common_pb2.Holder, case: str, item_index: int
) -> None:
    request = intake_pb2.GetCertificateRequest(
        certificate_id=cid or fz.stored.certificate_id,
        holder=holder,
        service_item_code=fz.items[item_index],
        case_number=case or "FUZZ-1",
    )
    client = fz.client(WINDOW)
    fz.answer(INTAKE_CODES, lambda: client.call(client.intake.GetCertificate, request))


@FUZZ
@given(
    envelope=st.one_of(
        st.binary(max_size=2048),
        deep_json().map(unsigned_envelope),
    ),
    data=st.data(),
)
def test_verify_hostile(fz: Fuzzed, envelope: bytes, data: st.DataObject) -> None:
    if data.draw(st.booleans()):
        envelope = data.draw(mutated(fz.valid_envelope))
    client = fz.client(WINDOW)
    fz.answer(VERIFY_CODES, lambda: client.verify(envelope))


@FEW
@given(payload=st.one_of(deep_json(), JSON_VALUES.map(lambda v: json.dumps(v).encode())))
def test_verify_signed_hostile_payloads(fz: Fuzzed, payload: bytes) -> None:
    envelope = sign_bytes(payload, [fz.amr.key])
    client = fz.client(WINDOW)
    code = fz.answer(VERIFY_CODES, lambda: client.verify(envelope))
    if code == "OK":
        assert not client.verify(envelope).valid


# --- DirectoryService ---------------------------------------------------------------------------


@FUZZ
@given(code=TEXT, kind=INT32, item=TEXT)
def test_directory_hostile(fz: Fuzzed, code: str, kind: int, item: str) -> None:
    client = fz.client(WINDOW)
    d = client.directory
    fz.answer(
        DIRECTORY_CODES,
        lambda: client.call(
            d.ListIssuerKeys, directory_pb2.ListIssuerKeysRequest(department_code=code)
        ),
    )
    fz.answer(
        DIRECTORY_CODES,
        lambda: client.call(
            d.ListCertificateTypes,
            directory_pb2.ListCertificateTypesRequest(kind=kind),  # type: ignore[arg-type]
        ),
    )
    fz.answer(
        DIRECTORY_CODES,
        lambda: client.call(d.GetServiceItem, directory_pb2.GetServiceItemRequest(code=item)),
    )


# --- AuditService -------------------------------------------------------------------------------


@FUZZ
@given(
    holder=st.one_of(st.none(), holders()),
    principal=TEXT,
    action=TEXT,
    cid=TEXT,
    # Mostly unset, so that the other filters are reached rather than refused after these.
    since=st.one_of(st.just(""), TEXT),
    until=st.one_of(st.just(""), TEXT),
    page_size=st.one_of(st.integers(0, 600), UINT32),
    token=st.one_of(
        st.just(""), TEXT, st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode())
    ),
    leaf=UINT64,
    size=UINT64,
    start=UINT64,
    end=UINT64,
)
def test_audit_hostile(
    fz: Fuzzed,
    holder: common_pb2.Holder | None,
    principal: str,
    action: str,
    cid: str,
    since: str,
    until: str,
    page_size: int,
    token: str,
    leaf: int,
    size: int,
    start: int,
    end: int,
) -> None:
    client = fz.client(AUDITOR)
    stub = audit_pb2_grpc.AuditServiceStub(client.channel)
    query = audit_pb2.AuditQuery(
        holder=holder,
        principal=principal,
        action=action,
        certificate_id=cid,
        since=since,
        until=until,
        page_size=page_size,
        page_token=token,
    )
    calls: list[tuple[Any, Any]] = [
        (stub.QueryAudit, query),
        (
            stub.GetInclusionProof,
            audit_pb2.GetInclusionProofRequest(leaf_index=leaf, tree_size=size),
        ),
        (
            stub.GetConsistencyProof,
            audit_pb2.GetConsistencyProofRequest(first_size=leaf, second_size=size),
        ),
        (stub.GetEntries, audit_pb2.GetEntriesRequest(start=start, end=end)),
        (stub.GetCheckpoint, audit_pb2.GetCheckpointRequest()),
    ]
    for method, request in calls:
        fz.answer(AUDIT_CODES, _bound(client, method, request))


def _bound(client: HubClient, method: Any, request: Any) -> Callable[[], object]:
    return lambda: client.call(method, request)


# --- CitizenService -----------------------------------------------------------------------------


@FUZZ
@given(
    holder=st.one_of(st.none(), holders()),
    page_size=st.one_of(st.integers(0, 600), UINT32),
    token=st.one_of(
        st.just(""), TEXT, st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode())
    ),
)
def test_citizen_accesses_hostile(
    fz: Fuzzed, holder: common_pb2.Holder | None, page_size: int, token: str
) -> None:
    client = fz.client(APP)
    request = citizen_pb2.ListMyAccessesRequest(
        applicant=holder, page_size=page_size, page_token=token
    )
    fz.answer(CITIZEN_CODES, lambda: client.call(client.citizen.ListMyAccesses, request))


@FUZZ
@given(
    holder=st.one_of(st.none(), holders()),
    request_id=st.one_of(TEXT, st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)),
    approve=st.booleans(),
)
def test_consent_hostile(
    fz: Fuzzed, holder: common_pb2.Holder | None, request_id: str, approve: bool
) -> None:
    client = fz.client(APP)
    listing = citizen_pb2.ListConsentRequestsRequest(applicant=holder)
    fz.answer(CITIZEN_CODES, lambda: client.call(client.citizen.ListConsentRequests, listing))
    decision = citizen_pb2.DecideConsentRequest(
        applicant=holder, request_id=request_id, approve=approve
    )
    fz.answer(DECIDE_CODES, lambda: client.call(client.citizen.DecideConsent, decision))


@FUZZ
@given(
    holder=st.one_of(st.none(), holders()),
    cid=st.one_of(TEXT, st.just("")),
    purpose=TEXT,
    item=st.one_of(st.just(""), TEXT),
    ttl=st.one_of(st.integers(0, 400), UINT32),
)
def test_create_presentation_hostile(
    fz: Fuzzed, holder: common_pb2.Holder | None, cid: str, purpose: str, item: str, ttl: int
) -> None:
    client = fz.client(APP)
    request = citizen_pb2.CreatePresentationRequest(
        applicant=holder,
        certificate_id=cid or fz.stored.certificate_id,
        purpose=purpose,
        service_item_code=item,
        ttl_seconds=ttl,
    )
    fz.answer(PRESENT_CODES, lambda: client.call(client.citizen.CreatePresentation, request))
    export = citizen_pb2.ExportCredentialRequest(
        applicant=holder, certificate_id=cid or fz.stored.certificate_id
    )
    fz.answer(PRESENT_CODES, lambda: client.call(client.citizen.ExportCredential, export))


@FUZZ
@given(token=TEXT, item_index=st.integers(0, 12), case=TEXT, data=st.data())
def test_redeem_presentation_hostile(
    fz: Fuzzed, token: str, item_index: int, case: str, data: st.DataObject
) -> None:
    if data.draw(st.booleans()):
        valid = fz.client(APP).create_presentation(
            fz.stored.certificate_id, id_type="USCC", holder_id=fz.holder.holder.id
        )
        token = data.draw(mutated(valid.token.encode())).decode("utf-8", errors="replace")
    request = intake_pb2.RedeemPresentationRequest(
        token=token, service_item_code=fz.items[item_index], case_number=case or "FUZZ-QR"
    )
    client = fz.client(WINDOW)
    fz.answer(REDEEM_CODES, lambda: client.call(client.intake.RedeemPresentation, request))


# --- every RPC, as raw wire bytes ---------------------------------------------------------------

UNARY_METHODS = [
    (DEPARTMENT, "/certhub.v1.IngestService/PushCertificate", PUSH_CODES),
    (DEPARTMENT, "/certhub.v1.IngestService/RevokeCertificate", REVOKE_CODES),
    (WINDOW, "/certhub.v1.IntakeService/FetchCertificates", INTAKE_CODES),
    (WINDOW, "/certhub.v1.IntakeService/GetCertificate", INTAKE_CODES),
    (WINDOW, "/certhub.v1.IntakeService/VerifyCertificate", VERIFY_CODES),
    (WINDOW, "/certhub.v1.DirectoryService/ListIssuerKeys", DIRECTORY_CODES),
    (WINDOW, "/certhub.v1.DirectoryService/ListCertificateTypes", DIRECTORY_CODES),
    (WINDOW, "/certhub.v1.DirectoryService/GetServiceItem", DIRECTORY_CODES),
    (WINDOW, "/certhub.v1.DirectoryService/GetStats", DIRECTORY_CODES),
    (AUDITOR, "/certhub.v1.AuditService/QueryAudit", AUDIT_CODES),
    (AUDITOR, "/certhub.v1.AuditService/GetCheckpoint", AUDIT_CODES),
    (AUDITOR, "/certhub.v1.AuditService/GetInclusionProof", AUDIT_CODES),
    (AUDITOR, "/certhub.v1.AuditService/GetConsistencyProof", AUDIT_CODES),
    (AUDITOR, "/certhub.v1.AuditService/GetEntries", AUDIT_CODES),
    (APP, "/certhub.v1.CitizenService/ListMyAccesses", CITIZEN_CODES),
    (APP, "/certhub.v1.CitizenService/CreatePresentation", PRESENT_CODES),
    (APP, "/certhub.v1.CitizenService/ListConsentRequests", CITIZEN_CODES),
    (APP, "/certhub.v1.CitizenService/DecideConsent", DECIDE_CODES),
    (APP, "/certhub.v1.CitizenService/ExportCredential", PRESENT_CODES),
    (WINDOW, "/certhub.v1.IntakeService/RedeemPresentation", REDEEM_CODES),
]


def _string_field_with_bad_utf8(number: int) -> bytes:
    """A length-delimited field ``number`` whose bytes are not UTF-8."""
    return bytes([(number << 3) | 2, 4]) + b"\xff\xfe\xc0\x80"


@FUZZ
@given(
    target=st.sampled_from(UNARY_METHODS),
    data=st.one_of(
        st.binary(max_size=512),
        st.integers(1, 8).map(_string_field_with_bad_utf8),
    ),
)
def test_raw_wire_bytes(fz: Fuzzed, target: tuple[str, str, set[str]], data: bytes) -> None:
    principal, method, codes = target
    fz.answer(codes, fz.raw(principal, method, data))


@FEW
@given(frames=st.lists(st.binary(max_size=64), min_size=1, max_size=4))
def test_raw_push_stream_frames(fz: Fuzzed, frames: list[bytes]) -> None:
    """A stream whose frames are valid requests followed by undecodable ones: the valid ones
    are answered, then the stream ends INVALID_ARGUMENT, never INTERNAL."""
    client = fz.client(DEPARTMENT)
    stream = client.channel.stream_stream(
        "/certhub.v1.IngestService/PushCertificates",
        request_serializer=lambda b: b,
        response_deserializer=ingest_pb2.PushResult.FromString,
    )
    before = snapshot(fz.running.engine)
    first = ingest_pb2.PushRequest(envelope=b"{}", client_ref="first").SerializeToString()
    with pytest.raises(grpc.RpcError) as caught:
        list(stream(iter([first, *frames, _string_field_with_bad_utf8(3)]), timeout=30))
    error: Any = caught.value
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert snapshot(fz.running.engine) == before


# --- limits -------------------------------------------------------------------------------------


def test_envelope_over_the_size_limit(fz: Fuzzed) -> None:
    payload = fz.fresh_payload()
    payload["fields"] = {"padding": "x" * 100}
    envelope = sign_dict(payload, [fz.amr.key])
    oversized = envelope + b" " * (MAX_ENVELOPE_BYTES - len(envelope) + 1)
    client = fz.client(DEPARTMENT)
    with pytest.raises(HubClientError) as caught:
        client.push(oversized)
    assert caught.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert str(MAX_ENVELOPE_BYTES) in caught.value.message
    with pytest.raises(HubClientError) as shown:
        fz.client(WINDOW).verify(oversized)
    assert shown.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED


def test_message_over_the_transport_limit(fz: Fuzzed) -> None:
    client = fz.client(DEPARTMENT)
    before = snapshot(fz.running.engine)
    with pytest.raises(HubClientError) as caught:
        client.push(fz.valid_envelope, attachment=b"\x00" * (MAX_MESSAGE_BYTES + 1))
    assert caught.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert snapshot(fz.running.engine) == before
    # The hub keeps serving after refusing it.
    assert client.push(fz.valid_envelope).outcome == ingest_pb2.DUPLICATE
