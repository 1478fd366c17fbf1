"""The applicant's use cases, through the government app that authenticated them.

A ``CITIZEN_APP`` principal acts for one applicant per call, named in the request: the hub computes
the applicant's holder commitment and never answers about another holder. Kept beside
``certhub.hub.app`` (like ``certhub.hub.casework``): the same order as every hub call (check ->
group commit with its audit entry -> answer), through the hub's committer, clock and registry. Every
call appends one entry carrying the commitment, never the raw ID.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from sqlalchemy import select
from sqlalchemy.orm import Session

from certhub.hub.app import Hub
from certhub.hub.audit import reads
from certhub.hub.audit.entry import OK, Action, AuditRecord
from certhub.hub.audit.log import HEAD_ID
from certhub.hub.domain.holder import Holder, check_holder
from certhub.hub.domain.status import CST, CertificateStatus
from certhub.hub.errors import FailedPrecondition, HubError, NotFound, PermissionDenied
from certhub.hub.registry import Principal, Role
from certhub.hub.services import consent, credentials, intake, presentation
from certhub.hub.services.ingest import require_role
from certhub.hub.store.engine import session_scope
from certhub.hub.store.models import Certificate, LogHead


@dataclass(frozen=True, slots=True)
class Applicant:
    """The applicant as the app named them (unchecked)."""

    id_type: str
    holder_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessesInput:
    applicant: Applicant
    page_size: int = 0
    page_token: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessesOutput:
    page: reads.Page
    audit_index: int
    # Entry index -> the purpose (用证事由) the applicant gave the presentation it redeemed.
    purposes: dict[int, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class CreatePresentationInput:
    applicant: Applicant
    certificate_id: str
    purpose: str = ""
    service_item_code: str = ""
    ttl_seconds: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class CreatePresentationOutput:
    token: str
    token_id: str
    expires_at: dt.datetime
    audit_index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RedeemInput:
    token: str
    purpose: intake.Purpose
    include_attachments: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class RedeemOutput:
    served: intake.Served
    purpose: str
    presented_at: dt.datetime
    audit_index: int


@dataclass(frozen=True, slots=True)
class Preview:
    """A pending consent request and exactly what the window would receive."""

    request: consent.Request
    certificates: tuple[intake.Served, ...]


@dataclass(frozen=True, slots=True)
class PreviewsOutput:
    previews: tuple[Preview, ...]
    audit_index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DecideInput:
    applicant: Applicant
    request_id: str
    approve: bool


@dataclass(frozen=True, slots=True)
class DecideOutput:
    request: consent.Request
    audit_index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportInput:
    applicant: Applicant
    certificate_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportOutput:
    credential: str
    claims: dict[str, object]
    status: credentials.StatusEntry
    status_list_url: str
    audit_index: int


class CitizenDesk:
    """CitizenService's use cases (access history, consent, presentation, export) and the
    window's redemption of a presentation token."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def applicant(self, applicant: Applicant) -> Holder:
        """The checked applicant (``INVALID_ARGUMENT`` naming ``applicant``)."""
        settings = self.hub.registry().settings
        return check_holder(
            applicant.id_type,
            applicant.holder_id,
            accept_legacy_uscc=settings.accept_legacy_uscc,
            field="applicant",
        ).holder

    async def list_my_accesses(self, caller: Principal, request: AccessesInput) -> AccessesOutput:
        """The audit entries whose holder commitment is the applicant's, newest first."""
        record = self._recorder(caller, Action.LIST_ACCESSES)
        commitment: str | None = None
        try:
            require_role(caller, Role.CITIZEN_APP, "acting for an applicant")
            holder = self.applicant(request.applicant)
            commitment = self.hub.commitment(holder.key())
            page_size = reads.page_size_of(request.page_size)
            before = reads.decode_page_token(request.page_token)
        except HubError as error:
            await self._refuse(record(error.status_name, holder=commitment), error)
        where = reads.QueryFilter(holder_commitment=commitment)

        def read() -> tuple[reads.Page, dict[int, str]]:
            with session_scope(self.hub.sessions) as session:
                page = reads.query(session, where, page_size=page_size, before=before)
                redeemed = {
                    e.index: (str(e.fields.get("case")), _first_id(e))
                    for e in page.entries
                    if e.fields.get("action") == Action.REDEEM_PRESENTATION
                    and e.fields.get("outcome") == OK
                }
                given = presentation.redeemed_purposes(
                    session, {case for case, _ in redeemed.values()}
                )
            return page, {i: given[key] for i, key in redeemed.items() if key in given}

        # Read first, then audit: the call is not part of its own answer.
        page, purposes = await asyncio.to_thread(read)
        entry = record(OK, holder=commitment)
        index = (await self.hub.committer.submit_entry(entry).wait()).audit_index
        return AccessesOutput(page=page, audit_index=index, purposes=purposes)

    # --- consent and preview ----------------------------------------------------------------

    async def list_consent_requests(
        self, caller: Principal, applicant: Applicant
    ) -> PreviewsOutput:
        """The applicant's pending requests, each with the certificates it would share now."""
        now = self.hub.clock()
        record = self._recorder(caller, Action.LIST_CONSENT_REQUESTS)
        commitment: str | None = None
        try:
            require_role(caller, Role.CITIZEN_APP, "acting for an applicant")
            holder = self.applicant(applicant)
            commitment = self.hub.commitment(holder.key())
        except HubError as error:
            await self._refuse(record(error.status_name, holder=commitment), error)
        registry = self.hub.registry()

        def read() -> tuple[list[consent.Request], intake.HolderView]:
            with session_scope(self.hub.sessions) as session:
                requests = consent.pending(session, commitment, now=now)
            return requests, self.hub._load_holder_view(holder.key())

        requests, view = await asyncio.to_thread(read)
        today = now.astimezone(CST).date()
        previews = []
        for request in requests:
            wanted = set(request.type_codes)
            shown = [
                intake.Served(c, c.status(today, distrusted=registry.compromised_key_ids), None)
                for c in view.certificates
                if c.type_code in wanted
            ]
            previews.append(Preview(request, tuple(shown)))
        entry = record(OK, holder=commitment)
        index = (await self.hub.committer.submit_entry(entry).wait()).audit_index
        return PreviewsOutput(tuple(previews), index)

    async def decide_consent(self, caller: Principal, request: DecideInput) -> DecideOutput:
        """Approve or decline one of the applicant's pending requests."""
        now = self.hub.clock()
        record = self._recorder(caller, Action.DECIDE_CONSENT)
        commitment: str | None = None
        try:
            require_role(caller, Role.CITIZEN_APP, "acting for an applicant")
            holder = self.applicant(request.applicant)
            commitment = self.hub.commitment(holder.key())
            request_id = consent.check_request_id(request.request_id)
        except HubError as error:
            await self._refuse(record(error.status_name, holder=commitment), error)
        decision = "approved" if request.approve else "declined"

        def describe(decided: consent.Request | None, error: HubError | None) -> AuditRecord:
            return record(
                error.status_name if error else decision,
                holder=commitment,
                service_item_code=decided.service_item_code if decided else None,
                case_number=decided.case_number if decided else None,
            )

        committed = await self.hub.committer.submit(
            lambda s: consent.decide(
                s, request_id, holder_commitment=commitment, approve=request.approve, now=now
            ),
            describe,
        ).wait()
        return DecideOutput(committed.value, committed.audit_index)

    # --- portable credentials ---------------------------------------------------------------

    def issuer(self) -> str:
        return credentials.issuer_url(self.hub.audit_log.keys.origin)

    async def export_credential(self, caller: Principal, request: ExportInput) -> ExportOutput:
        """One of the applicant's certificates in force as a W3C VC 2.0 (vc+jwt) issued by
        the hub, with a Bitstring Status List entry (``certhub.hub.services.credentials``)."""
        now = self.hub.clock()
        record = self._recorder(caller, Action.EXPORT_CREDENTIAL)
        registry = self.hub.registry()
        commitment: str | None = None
        try:
            require_role(caller, Role.CITIZEN_APP, "exporting credentials")
            holder = self.applicant(request.applicant)
            commitment = self.hub.commitment(holder.key())
            intake.check_certificate_id(request.certificate_id)
            found = await asyncio.to_thread(self._certificate_row, request.certificate_id)
            if found is None or found[1] != holder.key():
                raise NotFound(
                    f"the applicant has no certificate {request.certificate_id}",
                    reason="CERTIFICATE_NOT_FOUND",
                )
            stored, _, lineage = found
            status = stored.status(
                now.astimezone(CST).date(), distrusted=registry.compromised_key_ids
            )
            if status is not CertificateStatus.VALID:
                raise FailedPrecondition(
                    f"certificate {request.certificate_id} is {status}: only a certificate in "
                    "force is exported",
                    reason="CERTIFICATE_NOT_VALID",
                )
        except HubError as error:
            ids = (request.certificate_id,) if request.certificate_id else ()
            await self._refuse(
                record(error.status_name, holder=commitment, certificate_ids=ids), error
            )
        committed = await self.hub.committer.submit(
            lambda s: credentials.allocate(
                s,
                certificate_id=stored.certificate_id,
                version=stored.version,
                lineage=lineage,
                now=now,
            ),
            lambda _v, error: record(
                error.status_name if error else OK,
                holder=commitment,
                certificate_ids=(stored.certificate_id,),
            ),
        ).wait()
        issuer = self.issuer()
        claims = credentials.credential(
            envelope=stored.envelope,
            department_key_id=stored.key_id,
            issuer=issuer,
            status=committed.value,
            issuer_names={code: d.name for code, d in registry.departments.items()},
        )
        token = credentials.sign_jwt(self.hub.attestation_key, claims, issuer=issuer)
        url = credentials.status_list_url(issuer, committed.value.list_number)
        return ExportOutput(
            credential=token,
            claims=claims,
            status=committed.value,
            status_list_url=url,
            audit_index=committed.audit_index,
        )

    def status_list(
        self, list_number: int, purpose: credentials.Purpose = credentials.Purpose.REVOCATION
    ) -> str:
        """The status list credential ``list_number`` as it is now (vc+jwt); NOT_FOUND for
        a list that does not exist."""
        registry = self.hub.registry()
        with session_scope(self.hub.sessions) as session:
            if not credentials.list_exists(session, list_number):
                raise credentials.no_such_list(list_number)
            indices = credentials.set_indices(
                session, list_number, purpose, distrusted=registry.compromised_key_ids
            )
        return credentials.status_list_credential(
            self.hub.attestation_key,
            issuer=self.issuer(),
            list_number=list_number,
            purpose=purpose,
            indices=indices,
            now=self.hub.clock(),
        )

    def status_generation(self) -> tuple[int, str]:
        """What every status list depends on, cheaply: the audit log's size (each export
        and each revocation appends an entry in its own transaction) and the registry's
        digest (a key marked compromised or trusted again)."""
        with session_scope(self.hub.sessions) as session:
            size = session.execute(select(LogHead.size).where(LogHead.id == HEAD_ID)).scalar()
        return int(size or 0), self.hub.registry().digest

    def _certificate_row(
        self, certificate_id: str
    ) -> tuple[intake.StoredCertificate, str, str] | None:
        with session_scope(self.hub.sessions) as session:
            found = intake.load_certificate(session, certificate_id)
            if found is None:
                return None
            lineage = session.execute(
                select(Certificate.lineage).where(
                    Certificate.certificate_id == found[0].certificate_id,
                    Certificate.version == found[0].version,
                )
            ).scalar_one()
        return found[0], found[1], lineage

    # --- presentation tokens (亮证) -------------------------------------------------------

    async def create_presentation(
        self, caller: Principal, request: CreatePresentationInput
    ) -> CreatePresentationOutput:
        """A single-use token, valid at most 5 minutes, showing one of the applicant's
        certificates (in force today) to a window."""
        now = self.hub.clock()
        record = self._recorder(caller, Action.CREATE_PRESENTATION)
        commitment: str | None = None
        registry = self.hub.registry()
        try:
            require_role(caller, Role.CITIZEN_APP, "creating presentation tokens")
            holder = self.applicant(request.applicant)
            commitment = self.hub.commitment(holder.key())
            intake.check_certificate_id(request.certificate_id)
            purpose = presentation.check_purpose_text(request.purpose)
            ttl = presentation.check_ttl(request.ttl_seconds)
            item_code = request.service_item_code or None
            if item_code is not None and item_code not in registry.service_items:
                raise NotFound(
                    f"service_item_code: {item_code[:64]!r} is not in the registry",
                    reason="UNKNOWN_SERVICE_ITEM",
                )
            stored = await self._holders_certificate(holder, request.certificate_id)
            status = stored.status(
                now.astimezone(CST).date(), distrusted=registry.compromised_key_ids
            )
            if status is not CertificateStatus.VALID:
                raise FailedPrecondition(
                    f"certificate {request.certificate_id} is {status}: only a certificate in "
                    "force can be presented",
                    reason="CERTIFICATE_NOT_VALID",
                )
        except HubError as error:
            ids = (request.certificate_id,) if request.certificate_id else ()
            await self._refuse(
                record(error.status_name, holder=commitment, certificate_ids=ids), error
            )
        expires = (now + dt.timedelta(seconds=ttl)).replace(microsecond=0)
        row = presentation.Row(
            token_id=presentation.new_token_id(),
            holder_commitment=commitment,
            certificate_id=stored.certificate_id,
            service_item_code=item_code,
            purpose=purpose,
            created_at=now,
            expires_at=expires,
            redeemed_at=None,
        )
        committed = await self.hub.committer.submit(
            lambda s: presentation.store(s, row, created_by=caller.name),
            lambda _v, error: record(
                error.status_name if error else OK,
                holder=commitment,
                certificate_ids=(stored.certificate_id,),
                service_item_code=item_code,
            ),
        ).wait()
        token = presentation.mint(
            self.hub.attestation_key, token_id=row.token_id, expires_at=expires
        )
        return CreatePresentationOutput(
            token=token,
            token_id=row.token_id,
            expires_at=expires,
            audit_index=committed.audit_index,
        )

    async def redeem_presentation(self, caller: Principal, request: RedeemInput) -> RedeemOutput:
        """A window redeems a token for a case: the certificate with its envelope, once."""
        now = self.hub.clock()
        case = request.purpose
        record = self._recorder(caller, Action.REDEEM_PRESENTATION)
        registry = self.hub.registry()
        commitment: str | None = None
        ids: tuple[str, ...] = ()
        try:
            item = intake.check_purpose(registry, caller, case)
            claims = presentation.read_token(request.token, self.hub.attestation_key)
            if claims.expires_at <= now:
                raise presentation.expired(claims.expires_at)
            row = await asyncio.to_thread(self._load_presentation, claims.token_id)
            if row is None:
                raise presentation.unknown()
            commitment = row.holder_commitment
            ids = (row.certificate_id,)
            if row.redeemed_at is not None:
                raise presentation.replayed(row)
            if row.service_item_code is not None and row.service_item_code != item.code:
                raise PermissionDenied(
                    f"token: the applicant bound it to service item {row.service_item_code}, "
                    f"not {item.code}",
                    reason="PRESENTATION_OTHER_ITEM",
                )
            found = await asyncio.to_thread(self.hub._load_certificate, row.certificate_id)
            if found is None:
                raise NotFound(
                    f"certificate {row.certificate_id} is no longer held",
                    reason="CERTIFICATE_NOT_FOUND",
                )
            stored = found[0]
            if stored.type_code not in item.satisfying_types:
                raise PermissionDenied(
                    f"certificate type {stored.type_code} satisfies no material of service "
                    f"item {item.code}",
                    reason="NOT_NEEDED_FOR_ITEM",
                )
        except HubError as error:
            entry = record(
                error.status_name,
                holder=commitment,
                certificate_ids=ids,
                service_item_code=case.service_item_code,
                case_number=case.case_number,
            )
            await self._refuse(entry, error)
        committed = await self.hub.committer.submit(
            lambda s: self._redeem(s, claims.token_id, caller, case, now),
            lambda _v, error: record(
                error.status_name if error else OK,
                holder=commitment,
                certificate_ids=ids,
                service_item_code=case.service_item_code,
                case_number=case.case_number,
            ),
        ).wait()
        attachments = await self.hub._attachments([(stored, None)], request.include_attachments)
        status = stored.status(now.astimezone(CST).date(), distrusted=registry.compromised_key_ids)
        served = intake.Served(stored, status, attachments.get(stored.attachment_sha256 or ""))
        return RedeemOutput(
            served=served,
            purpose=row.purpose or "",
            presented_at=row.created_at,
            audit_index=committed.audit_index,
        )

    # --- internals ----------------------------------------------------------------------

    @staticmethod
    def _redeem(
        session: Session,
        token_id: str,
        caller: Principal,
        case: intake.Purpose,
        now: dt.datetime,
    ) -> None:
        """Use the token up and count the case as served by an e-certificate (the usage
        KPI's ``cases`` row, as a fetch that returned one does)."""
        presentation.consume(
            session, token_id, now=now, principal=caller.name, case_number=case.case_number
        )
        intake.record_cases(session, [(case, True, now)])

    async def _holders_certificate(
        self, holder: Holder, certificate_id: str
    ) -> intake.StoredCertificate:
        found = await asyncio.to_thread(self.hub._load_certificate, certificate_id)
        if found is None or found[1] != holder.key():
            # Same answer for "no such id" and "not this applicant's": no existence oracle.
            raise NotFound(
                f"the applicant has no certificate {certificate_id}",
                reason="CERTIFICATE_NOT_FOUND",
            )
        return found[0]

    def _load_presentation(self, token_id: str) -> presentation.Row | None:
        with session_scope(self.hub.sessions) as session:
            return presentation.load(session, token_id)

    def _recorder(self, caller: Principal, action: Action) -> Callable[..., AuditRecord]:
        now = self.hub.clock()

        def record(
            outcome: str,
            *,
            holder: str | None = None,
            certificate_ids: tuple[str, ...] = (),
            service_item_code: str | None = None,
            case_number: str | None = None,
        ) -> AuditRecord:
            return AuditRecord(
                time=now,
                principal=caller.name,
                action=action,
                outcome=outcome,
                holder_commitment=holder,
                certificate_ids=certificate_ids,
                service_item_code=service_item_code,
                case_number=case_number,
            )

        return record

    async def _refuse(self, entry: AuditRecord, error: HubError) -> NoReturn:
        raise await self.hub.audit_refusal(entry, error)


# A kept status list is made anew at least this often, well inside its validUntil (5 min).
STATUS_LIST_REFRESH_SECONDS = 60.0


class StatusLists:
    """Status list credentials kept while nothing they depend on changed
    (``CitizenDesk.status_generation``): the public endpoint then costs one primary-key read
    per request instead of a join over up to 65,536 entries, and still shows a revocation
    or a compromised key at the next request."""

    def __init__(self, desk: CitizenDesk) -> None:
        self._desk = desk
        self._lock = threading.Lock()
        # (list, purpose) -> (generation, made at (monotonic), credential). Only lists that
        # exist are kept (NOT_FOUND raises first): a handful of entries.
        self._kept: dict[tuple[int, str], tuple[tuple[int, str], float, str]] = {}

    def get(self, list_number: int, purpose: credentials.Purpose) -> str:
        key = (list_number, str(purpose))
        generation = self._desk.status_generation()  # before the list: a later write wins
        with self._lock:
            kept = self._kept.get(key)
        now = time.monotonic()
        if kept and kept[0] == generation and now - kept[1] < STATUS_LIST_REFRESH_SECONDS:
            return kept[2]
        body = self._desk.status_list(list_number, purpose)
        with self._lock:
            self._kept[key] = (generation, now, body)
        return body


def _first_id(entry: reads.EntryView) -> str:
    ids = entry.fields.get("certificate_ids")
    return str(ids[0]) if isinstance(ids, list) and ids else ""
