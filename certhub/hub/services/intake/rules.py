"""The rules of fetches, gets and verifications by intake systems at service windows, with no
database: the purpose a window must name, which certificates an item may see (data
minimisation), and whether a stored envelope is still the certificate its row claims.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from certhub.hub.audit.redact import check_case_number
from certhub.hub.domain.certificate import CertificatePayload, parse_certificate_payload
from certhub.hub.domain.holder import Holder, check_holder
from certhub.hub.domain.identifier import MAX_CERTIFICATE_ID_LENGTH
from certhub.hub.domain.status import CertificateStatus, compute_status
from certhub.hub.errors import HubError, InvalidArgument, NotFound, PermissionDenied
from certhub.hub.registry import Principal, Registry, Role, ServiceItem
from certhub.hub.services.ingest.rules import read_envelope, require_role, verify_certificate
from certhub.signing import CERTIFICATE_PAYLOAD_TYPE

# Case numbers are printed on forms and typed at windows; the city platform's are ~30 chars.
MAX_CASE_NUMBER_LENGTH = 64
# Service item codes come from the registry, which admits codes of at most 64 characters;
# anything longer cannot name an item, and refusing it early keeps it out of the audit log.
MAX_ITEM_CODE_LENGTH = 64


@dataclass(frozen=True, slots=True)
class Purpose:
    """Why a window asks: the service item and the case. Every intake call names one."""

    service_item_code: str
    case_number: str


@dataclass(frozen=True, slots=True)
class FetchInput:
    id_type: str
    holder_id: str
    purpose: Purpose
    include_attachments: bool = False


@dataclass(frozen=True, slots=True)
class GetInput:
    certificate_id: str
    id_type: str
    holder_id: str
    purpose: Purpose
    include_attachments: bool = False


@dataclass(frozen=True, slots=True)
class StoredCertificate:
    """What the hub knows of one stored certificate version; cacheable as bytes."""

    certificate_id: str
    version: int
    type_code: str
    is_current: bool
    valid_from: dt.date
    valid_until: dt.date | None
    envelope: bytes
    attachment_sha256: str | None
    revocation_envelope: bytes | None
    # The department key that verified the envelope when it was pushed.
    key_id: str
    # The SHA-256 (hex) stored with the envelope when it was pushed.
    envelope_sha256: str
    # Why the stored envelope cannot be used (``envelope_problem``), None when it can.
    unusable: str | None = None

    def status(
        self, today: dt.date, *, distrusted: frozenset[str] = frozenset()
    ) -> CertificateStatus:
        """Status today. A certificate signed by a key now marked compromised (``distrusted``)
        is REVOKED: its signature proves nothing any more, so it must not satisfy a material;
        the department re-signs it as a new version with a good key. One whose stored
        envelope cannot be read is UNUSABLE, unless revoked (which a window must see)."""
        if self.unusable is not None and self.revocation_envelope is None:
            return CertificateStatus.UNUSABLE
        return compute_status(
            valid_from=self.valid_from,
            valid_until=self.valid_until,
            today=today,
            revoked=self.revocation_envelope is not None or self.key_id in distrusted,
            superseded=not self.is_current,
        )


# The one list of what the hub reads of a stored certificate: the store's queries select a
# column per field and the cache codec carries a value per field, both in this order.
STORED_FIELDS = tuple(f.name for f in dataclasses.fields(StoredCertificate))


@dataclass(frozen=True, slots=True)
class Served:
    """One certificate in an answer: the stored record, its status and optional file."""

    stored: StoredCertificate
    status: CertificateStatus
    attachment: bytes | None


@dataclass(frozen=True, slots=True)
class MaterialResult:
    code: str
    name: str
    type_codes: tuple[str, ...]
    certificate_ids: tuple[str, ...]

    @property
    def paper_only(self) -> bool:
        return not self.type_codes

    @property
    def satisfied(self) -> bool:
        return bool(self.certificate_ids)


@dataclass(frozen=True, slots=True)
class FetchResult:
    holder: Holder
    certificates: tuple[Served, ...]
    materials: tuple[MaterialResult, ...]


@dataclass(frozen=True, slots=True)
class HolderView:
    """A holder's certificates and the ``holder_states`` counter read in the same snapshot."""

    version: int
    certificates: list[StoredCertificate]


def check_purpose(
    registry: Registry,
    caller: Principal,
    purpose: Purpose,
    *,
    earlier: Sequence[InvalidArgument] = (),
    certificate_id: str | None = None,
) -> ServiceItem:
    """An intake system may act only for its own service items, and only for a named case.

    Every malformed field is reported at once, with the ``earlier`` problems (the holder's,
    from ``read_holder``) and the ``certificate_id``'s of a get, as a push's payload is."""
    require_role(caller, Role.INTAKE, "fetching certificates")
    problems = [*earlier, *_purpose_problems(purpose)]
    if certificate_id is not None:
        try:
            check_certificate_id(certificate_id)
        except InvalidArgument as problem:
            problems.append(problem)
    if problems:
        raise _together(problems)
    code = purpose.service_item_code
    if code not in caller.service_items:
        raise PermissionDenied(
            f"principal {caller.name!r} does not handle service item {code}",
            reason="FOREIGN_SERVICE_ITEM",
        )
    item = registry.service_items.get(code)
    if item is None:
        raise NotFound(f"service item {code} is not in the registry", reason="UNKNOWN_SERVICE_ITEM")
    return item


def read_holder(
    registry: Registry, caller: Principal, id_type: str, holder_id: str
) -> tuple[Holder | None, list[InvalidArgument]]:
    """The holder of a fetch or get, or its problem to report with the purpose's
    (``check_purpose(earlier=...)``). A bad holder is INVALID_ARGUMENT whoever asks: for a
    caller that is no intake system it is raised at once, as it always was."""
    try:
        return checked_holder(registry, id_type, holder_id), []
    except InvalidArgument as problem:
        if caller.role is not Role.INTAKE:
            raise
        return None, [problem]


def _purpose_problems(purpose: Purpose) -> list[InvalidArgument]:
    problems = []
    code = purpose.service_item_code
    if not code:
        problems.append(
            InvalidArgument.field("service_item_code", "is required", reason="MISSING_SERVICE_ITEM")
        )
    elif len(code) > MAX_ITEM_CODE_LENGTH:
        problems.append(
            InvalidArgument.field(
                "service_item_code",
                f"is longer than {MAX_ITEM_CODE_LENGTH} characters",
                reason="BAD_SERVICE_ITEM",
            )
        )
    case = purpose.case_number
    if not case.strip():
        problems.append(
            InvalidArgument.field(
                "case_number", "is required: every fetch names a case", reason="MISSING_CASE"
            )
        )
    elif len(case) > MAX_CASE_NUMBER_LENGTH or not case.isprintable() or case != case.strip():
        problems.append(
            InvalidArgument.field(
                "case_number",
                f"must be at most {MAX_CASE_NUMBER_LENGTH} printable characters without "
                "surrounding spaces",
                reason="BAD_CASE_NUMBER",
            )
        )
    else:
        # A case number typed as the applicant's ID would reach the permanent log and the KPI
        # tables: refused (the refusal's entry carries it redacted, docs/trust.md).
        try:
            check_case_number(case)
        except InvalidArgument as problem:
            problems.append(problem)
    return problems


# The reason of a refusal with problems of several kinds (one kind keeps its own reason).
REASON_SEVERAL_PROBLEMS = "INVALID_REQUEST"


def _together(problems: list[InvalidArgument]) -> InvalidArgument:
    """One INVALID_ARGUMENT carrying every problem's field violations."""
    if len(problems) == 1:
        return problems[0]
    violations = tuple(v for p in problems for v in p.violations)
    reasons = {p.reason for p in problems}
    listed = "; ".join(f"{v.field}: {v.description}" for v in violations)
    return InvalidArgument(
        f"{len(violations)} problems in the request: {listed}",
        reason=reasons.pop() if len(reasons) == 1 else REASON_SEVERAL_PROBLEMS,
        violations=violations,
    )


def check_certificate_id(certificate_id: str) -> None:
    """A certificate id the hub could have stored: non-empty, bounded, printable. (Checked
    before any query: PostgreSQL rejects text containing NUL outright.)"""
    if not certificate_id:
        raise InvalidArgument.field(
            "certificate_id", "is required", reason="MISSING_CERTIFICATE_ID"
        )
    if len(certificate_id) > MAX_CERTIFICATE_ID_LENGTH or not certificate_id.isprintable():
        raise InvalidArgument.field(
            "certificate_id",
            f"must be at most {MAX_CERTIFICATE_ID_LENGTH} printable characters",
            reason="BAD_CERTIFICATE_ID",
        )


def checked_holder(registry: Registry, id_type: str, holder_id: str) -> Holder:
    return check_holder(
        id_type, holder_id, accept_legacy_uscc=registry.settings.accept_legacy_uscc, field="holder"
    ).holder


def select_for_item(
    item: ServiceItem,
    certificates: Sequence[StoredCertificate],
    *,
    today: dt.date,
    distrusted: frozenset[str] = frozenset(),
) -> tuple[list[tuple[StoredCertificate, CertificateStatus]], tuple[MaterialResult, ...]]:
    """Data minimisation: only types that satisfy a material of the item leave the hub."""
    wanted = item.satisfying_types
    chosen = [
        (c, c.status(today, distrusted=distrusted)) for c in certificates if c.type_code in wanted
    ]
    materials = tuple(
        MaterialResult(
            code=m.code,
            name=m.name,
            type_codes=m.type_codes,
            certificate_ids=tuple(
                c.certificate_id
                for c, status in chosen
                if status is CertificateStatus.VALID and c.type_code in m.type_codes
            ),
        )
        for m in item.materials
    )
    return chosen, materials


# Verdicts kept per process, by envelope digest: the same certificates are read again on
# every cache miss and parsing one costs tens of microseconds. 20,000 digests (~3 MB) hold
# the certificates a worker reads for hours of a district's fetches; a forgotten verdict is
# only recomputed.
ENVELOPE_VERDICTS_MAX = 20_000
_readable: OrderedDict[str, str | None] = OrderedDict()
_readable_lock = threading.Lock()


def envelope_problem(stored: StoredCertificate) -> str | None:
    """Why ``stored``'s envelope cannot be served as the certificate it claims to be, or
    None: its bytes must still have the digest stored at push time, and parse as a DSSE
    envelope whose payload names this certificate id and version. The signature was
    verified at push and is verified again by every client; it is not re-checked here."""
    envelope = stored.envelope
    if hashlib.sha256(envelope).hexdigest() != stored.envelope_sha256:
        return "the stored envelope no longer has the SHA-256 recorded when it was pushed"
    key = f"{stored.envelope_sha256}:{stored.certificate_id}:{stored.version}"
    with _readable_lock:
        if key in _readable:
            _readable.move_to_end(key)
            return _readable[key]
    problem = _parse_problem(stored)
    with _readable_lock:
        _readable[key] = problem
        while len(_readable) > ENVELOPE_VERDICTS_MAX:
            _readable.popitem(last=False)
    return problem


def _parse_problem(stored: StoredCertificate) -> str | None:
    try:
        payload = json.loads(read_envelope(stored.envelope).payload)
    except (HubError, ValueError) as e:
        return f"the stored envelope is not readable: {e}"
    if not isinstance(payload, dict):
        return "the stored envelope's payload is not a JSON object"
    named = (payload.get("certificate_id"), payload.get("version"))
    if named != (stored.certificate_id, stored.version):
        return (
            "the stored envelope names another certificate or version than its row "
            f"({stored.certificate_id} version {stored.version})"
        )
    return None


@dataclass(frozen=True, slots=True)
class VerifyResult:
    valid: bool
    status: CertificateStatus | None
    reasons: tuple[str, ...]
    payload: CertificatePayload | None
    issuer_name: str
    key_id: str
    stored: bool


@dataclass(frozen=True, slots=True)
class ShownEnvelope:
    """An envelope shown at a window, checked as far as it can be without the database."""

    envelope_sha256: str
    payload: CertificatePayload
    issuer_name: str
    # The department key that verified it, "" if none did.
    key_id: str
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HeldVersion:
    """What the hub holds of a shown certificate's version."""

    # The SHA-256 of the stored bytes; None when no such version is stored.
    envelope_sha256: str | None
    is_current: bool
    # The lineage is revoked (a revocation is known even of a version not stored).
    revoked: bool


def check_shown(registry: Registry, envelope_bytes: bytes) -> ShownEnvelope | VerifyResult:
    """The envelope's payload, issuer and signature, or the final answer when it is no
    certificate at all. Unreadable bytes raise INVALID_ARGUMENT."""
    envelope = read_envelope(envelope_bytes)
    reasons: list[str] = []
    if envelope.payload_type != CERTIFICATE_PAYLOAD_TYPE:
        reasons.append(f"payload type is {envelope.payload_type!r}, not a certificate")
        return VerifyResult(False, None, tuple(reasons), None, "", "", stored=False)
    try:
        payload = parse_certificate_payload(
            envelope.payload, accept_legacy_uscc=registry.settings.accept_legacy_uscc
        )
    except HubError as e:
        return VerifyResult(False, None, (f"payload: {e.message}",), None, "", "", stored=False)
    department = registry.departments.get(payload.issuer_code)
    if department is None:
        reasons.append(f"issuer {payload.issuer_code} is not a registered department")
    verification = verify_certificate(registry, envelope, payload)
    reasons.extend(verification.reasons)
    key_id = verification.verified[0].public_key.key_id if verification.verified else ""
    if not verification.verified and not verification.reasons:
        reasons.append("no signature verifies")
    return ShownEnvelope(
        envelope_sha256=hashlib.sha256(envelope_bytes).hexdigest(),
        payload=payload,
        issuer_name=department.name if department else "",
        key_id=key_id,
        reasons=tuple(reasons),
    )


def judge_shown(shown: ShownEnvelope, held: HeldVersion, *, today: dt.date) -> VerifyResult:
    """The answer for a shown certificate, given what the hub holds of its version."""
    payload = shown.payload
    reasons = list(shown.reasons)
    stored = False
    if held.envelope_sha256 is None:
        reasons.append("the hub holds no such certificate version")
    else:
        stored = held.envelope_sha256 == shown.envelope_sha256
        if not stored:
            reasons.append("the hub holds different bytes for this certificate version")
    status = compute_status(
        valid_from=payload.valid_from,
        valid_until=payload.valid_until,
        today=today,
        revoked=held.revoked,
        superseded=not held.is_current,
    )
    if status is not CertificateStatus.VALID:
        reasons.append(f"status is {status}")
    return VerifyResult(
        valid=not reasons,
        status=status,
        reasons=tuple(reasons),
        payload=payload,
        issuer_name=shown.issuer_name,
        key_id=shown.key_id,
        stored=stored,
    )
