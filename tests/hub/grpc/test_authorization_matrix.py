"""Issue 6 item 3: every role x every method x own/foreign resource, as one table.

Each row is one call over real mTLS. An allowed call must succeed; a refused one must answer
PERMISSION_DENIED or UNAUTHENTICATED, carry the index of its audit entry, and add exactly one
entry to the log whose outcome is that status name.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from support.hubs import RunningHub
from support.probes import audit_row, audit_size
from support.shared_hub import DATABASES, next_serial, serving_hub

from certhub.core.rpc.client import HubClient, HubClientError
from certhub.hub.demo.world import (
    CITIZEN_APP,
    DemoDepartment,
    DemoWorld,
    certificate_payload,
    citizen,
    enterprise,
    sign_certificate,
    sign_revocation,
)
from certhub.hub.domain.certificate import CertificatePayload
from certhub.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    citizen_pb2,
    directory_pb2,
    ingest_pb2,
    intake_pb2,
)

OK = "OK"
DENIED = "PERMISSION_DENIED"
UNAUTHENTICATED = "UNAUTHENTICATED"

# The callers. The intake system handles only the first three service items of the demo.
CALLERS = {
    "department": "gulou-amr-adapter",
    "intake": "wenquan-street-office",
    "auditor": "gulou-audit-office",
    "operator": "gulou-operator",
    "citizen_app": CITIZEN_APP,
    "unknown": "not-in-the-registry",
}
OWN_ITEM, FOREIGN_ITEM = 0, 5  # indices into the demo's service items
# A principal outside the table whose audit entries are "foreign" to every caller.
BYSTANDER = "gulou-service-centre"

INGEST = ("PushCertificate", "PushCertificates", "RevokeCertificate")
INTAKE = (
    "FetchCertificates",
    "GetCertificate",
    "VerifyCertificate",
    "RegisterCase",
    "CloseCase",
    "RedeemPresentation",
)
DIRECTORY = ("ListIssuerKeys", "ListCertificateTypes", "GetServiceItem", "GetStats")
AUDIT = ("QueryAudit", "GetCheckpoint", "GetInclusionProof", "GetConsistencyProof", "GetEntries")
# CitizenService (issue 14): only a citizen app, acting for the applicant it names.
CITIZEN = (
    "ListMyAccesses",
    "CreatePresentation",
    "ListConsentRequests",
    "DecideConsent",
    "ExportCredential",
)
# An item no row fetches for, made consent_required so DecideConsent has a real request.
CONSENT_ITEM = 1
# Methods where "own" and "foreign" differ: a department's own certificates vs another
# department's, an intake system's own service items vs others', a log entry the caller
# caused vs another principal's.
# For CloseCase: a case the caller registered vs one another window registered.
WITH_RESOURCE = frozenset(
    {
        *INGEST,
        "FetchCertificates",
        "GetCertificate",
        "RegisterCase",
        "CloseCase",
        "RedeemPresentation",
        "GetInclusionProof",
    }
)


def _expected(role: str, method: str, resource: str) -> str:
    """The access rules of DESIGN.md and audit.proto, written out once."""
    if role == "unknown":
        return UNAUTHENTICATED
    if method in DIRECTORY or method in ("GetCheckpoint", "GetConsistencyProof"):
        return OK
    if method in CITIZEN:
        return OK if role == "citizen_app" else DENIED
    if method in INGEST:
        return OK if role == "department" and resource == "own" else DENIED
    if method == "VerifyCertificate":
        return OK if role == "intake" else DENIED
    if method == "CloseCase" and role == "intake" and resource == "foreign":
        return "NOT_FOUND"  # the same answer as for no such case: no oracle
    if method in INTAKE:
        return OK if role == "intake" and resource == "own" else DENIED
    if method in ("QueryAudit", "GetEntries"):
        return OK if role == "auditor" else DENIED
    assert method == "GetInclusionProof"
    return OK if role == "auditor" or resource == "own" else DENIED


@dataclass(frozen=True)
class Row:
    role: str
    method: str
    resource: str  # "own" | "foreign" | "-"
    expect: str

    @property
    def id(self) -> str:
        return f"{self.role}-{self.method}-{self.resource}"


MATRIX = [
    Row(role, method, resource, _expected(role, method, resource))
    for role, method in itertools.product(CALLERS, (*INGEST, *INTAKE, *DIRECTORY, *AUDIT, *CITIZEN))
    for resource in (("own", "foreign") if method in WITH_RESOURCE else ("-",))
]


@pytest.fixture(scope="module", params=DATABASES)
def shared_hub(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, world: DemoWorld
) -> Iterator[RunningHub]:
    root: Path = tmp_path_factory.mktemp(f"matrix-{request.param}")
    with serving_hub(root, request.param, world) as running:
        code = list(world.items)[CONSENT_ITEM]
        items = {
            c: dataclasses.replace(i, consent_required=c == code) for c, i in world.items.items()
        }
        running.apply_registry(dataclasses.replace(world, items=items).registry_toml())
        yield running


class Scene:
    """Builds each row's resources, then makes the row's one call as its caller."""

    def __init__(self, running: RunningHub, world: DemoWorld) -> None:
        self.running = running
        self.world = world
        self.amr = world.department_by_name("市场监督管理局")
        self.health = world.department_by_name("卫生健康")
        self.items = list(world.items)

    def stored(self, department: DemoDepartment) -> CertificatePayload:
        """A freshly pushed certificate of ``department`` (a business licence for AMR)."""
        name = "营业执照" if department is self.amr else "公共场所卫生许可证"
        payload = certificate_payload(
            self.world,
            self.world.type_by_name(name).code,
            enterprise(next_serial() % 10_000_000),
            serial=next_serial(),
        )
        with self.running.client(department.principal) as client:
            client.push(sign_certificate(payload, [department.key]))
        return payload

    def citizens_licence(self) -> tuple[str, str]:
        """A citizen's freshly pushed business licence: (resident ID, certificate id)."""
        holder = citizen(next_serial() % 900)
        payload = certificate_payload(
            self.world, self.world.type_by_name("营业执照").code, holder, serial=next_serial()
        )
        with self.running.client(self.amr.principal) as client:
            client.push(sign_certificate(payload, [self.amr.key]))
        return holder.holder.id, payload.certificate_id

    def consent_request(self) -> tuple[str, str]:
        """A pending consent request a window opened for a citizen: (resident ID, its id)."""
        holder, _ = self.citizens_licence()
        with self.running.client(BYSTANDER) as window, pytest.raises(HubClientError) as asked:
            window.fetch(
                id_type="RESIDENT_ID",
                holder_id=holder,
                service_item=self.items[CONSENT_ITEM],
                case_number=f"MATRIX-CONSENT-{next_serial()}",
            )
        assert asked.value.reason == "CONSENT_PENDING"
        return holder, asked.value.metadata["consent_request_id"]

    def presentation_token(self) -> str:
        holder, licence = self.citizens_licence()
        with self.running.client(CITIZEN_APP) as app:
            created = app.create_presentation(licence, id_type="RESIDENT_ID", holder_id=holder)
        return created.token

    def unpushed(self) -> bytes:
        payload = certificate_payload(
            self.world,
            self.world.type_by_name("营业执照").code,
            enterprise(7),
            serial=next_serial(),
        )
        return sign_certificate(payload, [self.amr.key])

    def registration(self, item: str) -> intake_pb2.RegisterCaseRequest:
        return intake_pb2.RegisterCaseRequest(
            case_number=f"MATRIX-CASE-{next_serial()}",
            service_item_code=item,
            channel=intake_pb2.CASE_CHANNEL_WINDOW,
            department_code=self.amr.code,
        )

    def own_leaf(self, client: HubClient, principal: str) -> int:
        """The index of an audit entry this caller caused (here: a refused or allowed fetch)."""
        try:
            fetched = client.fetch(
                id_type="USCC",
                holder_id=enterprise(1).holder.id,
                service_item=self.items[OWN_ITEM],
                case_number="MATRIX-LEAF",
            )
        except HubClientError as error:
            index = error.audit_index
        else:
            index = fetched.audit_index
        assert index is not None
        assert audit_row(self.running.engine, index).principal == principal
        return index

    def call(self, row: Row) -> Callable[[HubClient], object]:
        """What the row's caller sends, built before the call so setup is not measured."""
        m, own = row.method, row.resource != "foreign"
        if m in ("PushCertificate", "PushCertificates"):
            # A department pushing its own certificate, or one issued (and signed) by another.
            issuer = self.amr if own else self.health
            name = "营业执照" if own else "公共场所卫生许可证"
            payload = certificate_payload(
                self.world, self.world.type_by_name(name).code, enterprise(3), serial=next_serial()
            )
            envelope = sign_certificate(payload, [issuer.key])
            if m == "PushCertificate":
                return lambda c: c.push(envelope)
            return lambda c: _stream_one(c, envelope)
        if m == "RevokeCertificate":
            issuer = self.amr if own else self.health
            target = self.stored(issuer)
            revocation = sign_revocation(target.certificate_id, self.amr.key)
            return lambda c: c.revoke(revocation)
        item = self.items[OWN_ITEM if own else FOREIGN_ITEM]
        if m == "FetchCertificates":
            holder = enterprise(2).holder.id
            return lambda c: c.fetch(
                id_type="USCC", holder_id=holder, service_item=item, case_number="MATRIX-1"
            )
        if m == "GetCertificate":
            target = self.stored(self.amr)
            return lambda c: c.get(
                target.certificate_id,
                id_type="USCC",
                holder_id=target.holder.id,
                service_item=item,
                case_number="MATRIX-2",
            )
        if m == "VerifyCertificate":
            envelope = self.unpushed()
            return lambda c: c.verify(envelope)
        if m == "RegisterCase":
            register = self.registration(item)
            return lambda c: c.call(c.intake.RegisterCase, register)
        if m == "CloseCase":
            # Registered beforehand by the matrix's intake system, or by another window.
            opened = self.registration(self.items[OWN_ITEM])
            with self.running.client(CALLERS["intake"] if own else BYSTANDER) as window:
                window.call(window.intake.RegisterCase, opened)
            close = intake_pb2.CloseCaseRequest(
                case_number=opened.case_number,
                materials=[
                    intake_pb2.MaterialUse(
                        material_code=code, source=intake_pb2.MATERIAL_SOURCE_PAPER
                    )
                    for code, _, _ in self.world.items[self.items[OWN_ITEM]].materials
                ],
            )
            return lambda c: c.call(c.intake.CloseCase, close)
        if m == "RedeemPresentation":
            token = self.presentation_token()
            return lambda c: c.redeem_presentation(
                token, service_item=item, case_number="MATRIX-QR"
            )
        if m == "CreatePresentation":
            holder, licence = self.citizens_licence()
            return lambda c: c.create_presentation(licence, id_type="RESIDENT_ID", holder_id=holder)
        if m == "ExportCredential":
            holder, licence = self.citizens_licence()
            return lambda c: c.export_credential(licence, id_type="RESIDENT_ID", holder_id=holder)
        if m == "ListConsentRequests":
            holder = citizen(next_serial() % 900).holder.id
            return lambda c: c.consent_requests(id_type="RESIDENT_ID", holder_id=holder)
        if m == "DecideConsent":
            holder, request_id = self.consent_request()
            return lambda c: c.decide_consent(
                request_id, id_type="RESIDENT_ID", holder_id=holder, approve=True
            )
        if m == "ListMyAccesses":
            holder = citizen(next_serial() % 900).holder.id
            return lambda c: c.my_accesses(id_type="RESIDENT_ID", holder_id=holder)
        if m in DIRECTORY:
            request = {
                "ListIssuerKeys": directory_pb2.ListIssuerKeysRequest(),
                "ListCertificateTypes": directory_pb2.ListCertificateTypesRequest(),
                "GetServiceItem": directory_pb2.GetServiceItemRequest(code=self.items[0]),
                "GetStats": directory_pb2.GetStatsRequest(),
            }[m]
            return lambda c: c.call(getattr(c.directory, m), request)
        return self._audit_call(row)

    def _audit_call(self, row: Row) -> Callable[[HubClient], object]:
        def stub(c: HubClient) -> audit_pb2_grpc.AuditServiceStub:
            return audit_pb2_grpc.AuditServiceStub(c.channel)

        m = row.method
        if m == "QueryAudit":
            return lambda c: c.call(stub(c).QueryAudit, audit_pb2.AuditQuery(page_size=5))
        if m == "GetCheckpoint":
            return lambda c: c.call(stub(c).GetCheckpoint, audit_pb2.GetCheckpointRequest())
        if m == "GetEntries":
            return lambda c: c.call(stub(c).GetEntries, audit_pb2.GetEntriesRequest(start=0, end=1))
        if m == "GetConsistencyProof":
            size = audit_size(self.running.engine)
            return lambda c: c.call(
                stub(c).GetConsistencyProof,
                audit_pb2.GetConsistencyProofRequest(first_size=1, second_size=size),
            )
        assert m == "GetInclusionProof"
        # "own": an entry the caller caused; "foreign": one caused by another intake system.
        author = CALLERS[row.role] if row.resource == "own" else BYSTANDER
        with self.running.client(author) as client:
            leaf = self.own_leaf(client, author)
        size = audit_size(self.running.engine)
        return lambda c: c.call(
            stub(c).GetInclusionProof,
            audit_pb2.GetInclusionProofRequest(leaf_index=leaf, tree_size=size),
        )


def _stream_one(client: HubClient, envelope: bytes) -> ingest_pb2.PushResult:
    """A one-item stream; a refused item is a REJECTED result, raised here as its status."""
    [result] = client.push_stream([ingest_pb2.PushRequest(envelope=envelope)], timeout=30)
    if result.outcome == ingest_pb2.REJECTED:
        code = next(c for c in grpc.StatusCode if c.value[0] == result.code)
        raise HubClientError(
            result.message, code=code, reason=result.reason, audit_index=result.audit_index
        )
    return result


@pytest.mark.parametrize("row", MATRIX, ids=[r.id for r in MATRIX])
def test_authorization_matrix(row: Row, shared_hub: RunningHub, world: DemoWorld) -> None:
    scene = Scene(shared_hub, world)
    call = scene.call(row)
    principal = CALLERS[row.role]
    before = audit_size(shared_hub.engine)
    refusal: HubClientError | None
    with shared_hub.client(principal) as client:
        try:
            call(client)
        except HubClientError as error:
            outcome, refusal = error.code.name, error
        else:
            outcome, refusal = OK, None
    assert outcome == row.expect, f"{row.id}: {refusal}"
    if refusal is None:
        return
    assert refusal.reason, refusal
    assert refusal.audit_index is not None, f"{row.id}: refusal carries no audit index"
    entry = audit_row(shared_hub.engine, refusal.audit_index)
    assert entry.outcome == row.expect
    assert entry.principal == principal
    assert audit_size(shared_hub.engine) == before + 1, "a refusal adds exactly one entry"


def test_matrix_covers_every_method_of_every_service() -> None:
    """A method added to a service without a row here fails this test."""
    services = {
        ingest_pb2.DESCRIPTOR.services_by_name["IngestService"],
        intake_pb2.DESCRIPTOR.services_by_name["IntakeService"],
        directory_pb2.DESCRIPTOR.services_by_name["DirectoryService"],
        audit_pb2.DESCRIPTOR.services_by_name["AuditService"],
        citizen_pb2.DESCRIPTOR.services_by_name["CitizenService"],
    }
    methods = {m.name for s in services for m in s.methods}
    assert methods == {r.method for r in MATRIX}
    assert {r.role for r in MATRIX} == set(CALLERS)
