"""Fetches, gets and verifications by intake systems at service windows."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import operator
import threading
import typing
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from hub.audit.redact import check_case_number
from hub.domain.certificate import CertificatePayload, parse_certificate_payload
from hub.domain.holder import Holder, check_holder
from hub.domain.identifier import MAX_CERTIFICATE_ID_LENGTH
from hub.domain.status import CertificateStatus, compute_status
from hub.errors import HubError, InvalidArgument, NotFound, PermissionDenied
from hub.observability.metrics import metrics
from hub.registry import Principal, Registry, Role, ServiceItem
from hub.services import freshness
from hub.services.ingest import read_envelope, require_role
from hub.store.models import Attachment, Case, Certificate, HolderState, Revocation
from signing import CERTIFICATE_PAYLOAD_TYPE, verify_envelope

log = logging.getLogger("certhub.intake")

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


# StoredCertificate's fields are the one list of what is read of a stored certificate: the
# queries select a column per field, in field order (``_stored`` builds the dataclass from
# the row positionally), and the cache codec writes a value per field. A field is the
# Certificate column of its name, unless named here; ``unusable`` is no column but the
# verdict computed on read (``_stored``).
_COLUMN_OF_FIELD = {"revocation_envelope": Revocation.envelope}
_COMPUTED_FIELDS = frozenset({"unusable"})
STORED_FIELDS = tuple(f.name for f in dataclasses.fields(StoredCertificate))
_STORED_COLUMNS = tuple(
    _COLUMN_OF_FIELD[name] if name in _COLUMN_OF_FIELD else getattr(Certificate, name)
    for name in STORED_FIELDS
    if name not in _COMPUTED_FIELDS
)

# The fetch query, built once: constructing and compiling the select on every cache miss
# cost more CPU than PostgreSQL spent answering it.
_HOLDER_QUERY = (
    select(*_STORED_COLUMNS)
    .outerjoin(Revocation, Revocation.lineage == Certificate.lineage)
    .where(Certificate.holder_key == bindparam("holder_key"), Certificate.is_current.is_(True))
    .order_by(Certificate.issued_on.desc(), Certificate.certificate_id)
)


def load_holder(conn: Connection, holder_key: str) -> list[StoredCertificate]:
    """Current versions of every certificate of one holder, with revocations (the fetch query)."""
    rows = conn.execute(_HOLDER_QUERY, {"holder_key": holder_key}).all()
    return [_stored(row) for row in rows]


@dataclass(frozen=True, slots=True)
class HolderView:
    """A holder's certificates and the ``holder_states`` counter read in the same snapshot."""

    version: int
    certificates: list[StoredCertificate]


# The fetch query with the holder's counter as one more column: one statement, so one
# snapshot and one round trip on a cache miss (reading the counter first, as its own
# statement, was 8% of a cache-off hub's busy CPU, more than the certificates' query).
_VIEW_QUERY = _HOLDER_QUERY.add_columns(
    select(HolderState.version)
    .where(HolderState.holder_key == bindparam("holder_key"))
    .scalar_subquery()
)


def load_holder_view(conn: Connection, holder_key: str) -> HolderView:
    rows = conn.execute(_VIEW_QUERY, {"holder_key": holder_key}).all()
    if not rows:  # nothing to carry the counter: read it alone (a holder with no certificates)
        return HolderView(freshness.read_version(conn, holder_key), [])
    return HolderView(int(rows[0][-1] or 0), [_stored(row[:-1]) for row in rows])


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


def _stored(columns: Sequence[Any]) -> StoredCertificate:
    # The queries select _STORED_COLUMNS: every field but the computed ``unusable``, in
    # order. Checked here, on a read from the database only: the cached view carries the
    # verdict, so a warm fetch pays nothing for it.
    stored = StoredCertificate(*columns)
    problem = envelope_problem(stored)
    if problem is None:
        return stored
    log.error(
        "certificate %s version %d is unusable: %s", stored.certificate_id, stored.version, problem
    )
    metrics().unusable_certificates.inc()
    return dataclasses.replace(stored, unusable=problem)


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


def load_attachments(session: Session, digests: Sequence[str]) -> dict[str, bytes]:
    if not digests:
        return {}
    rows = session.execute(
        select(Attachment.sha256, Attachment.data).where(Attachment.sha256.in_(digests))
    ).all()
    return {row.sha256: row.data for row in rows}


def record_cases(session: Session, cases: Sequence[tuple[Purpose, bool, dt.datetime]]) -> None:
    """Record fetched cases with one upsert: a case is inserted on its first fetch and
    ``served`` only ever goes from False to True. One statement per group-commit batch
    instead of a savepoint and an upsert per fetch (three round trips each, on the single
    commit thread)."""
    rows: dict[str, dict[str, Any]] = {}
    for purpose, served, now in cases:
        row = rows.get(purpose.case_number)
        if row is None:
            rows[purpose.case_number] = {
                "case_number": purpose.case_number,
                "service_item_code": purpose.service_item_code,
                "first_fetch_at": now,
                "served": served,
            }
        else:  # one statement may not touch a row twice: merge repeats of a case first
            row["served"] = row["served"] or served
    if not rows:
        return
    if session.get_bind().dialect.name == "postgresql":
        document = [dict(r, first_fetch_at=r["first_fetch_at"].isoformat()) for r in rows.values()]
        session.execute(_POSTGRESQL_RECORD_CASES, {"rows": json.dumps(document)})
        return
    # Core, not the ORM: its per-row insert bookkeeping cost more than the statement.
    table = cast("Table", Case.__table__)
    stmt = sqlite.insert(table).values(list(rows.values()))
    stmt = stmt.on_conflict_do_update(
        index_elements=["case_number"],
        set_={"served": True},
        where=stmt.excluded.served & ~table.c.served,
    )
    session.execute(stmt)


# The same upsert as one fixed text with the rows as a JSON document: the multi-row
# statement's text varies with the batch, and compiling it each time cost more than the
# query on the single commit thread.
_POSTGRESQL_RECORD_CASES = text(
    """
INSERT INTO cases (case_number, service_item_code, first_fetch_at, served)
SELECT c.case_number, c.service_item_code, c.first_fetch_at, c.served
FROM json_to_recordset(CAST(:rows AS json)) AS c(
    case_number text, service_item_code text, first_fetch_at timestamptz, served boolean)
ON CONFLICT (case_number) DO UPDATE SET served = true
WHERE excluded.served AND NOT cases.served
"""
)


@dataclass(frozen=True, slots=True)
class FetchUnit:
    """What a fetch asks of its group commit: record its case (None: already recorded by
    this process) and, for a view served from the cache, check it is still current."""

    case: tuple[Purpose, bool, dt.datetime] | None
    # (holder key, counter the cached view was read at); None for a view read just now.
    cached_view: tuple[str, int] | None


class FetchBatch:
    """The group committer's handle for a run of fetches: one query checks every cached
    view of the run (``hub.services.freshness``), one upsert records their cases. A unit's
    value is ``freshness.STALE`` when its view was superseded (its case is then left to the
    fetch's retry, which knows what was really served), else None."""

    # ON CONFLICT resolves every clash with another process's insert, and the check only
    # reads: no savepoint needed.
    may_race = False

    def apply_all(self, session: Session, items: Sequence[object]) -> list[str | None]:
        # Items are what Hub.fetch hands the committer with this batch handle.
        units = cast("list[FetchUnit]", items)
        views = dict(u.cached_view for u in units if u.cached_view is not None)
        stale = freshness.stale_holders(session, views)
        values = [
            freshness.STALE if u.cached_view is not None and u.cached_view[0] in stale else None
            for u in units
        ]
        record_cases(
            session,
            [u.case for u, value in zip(units, values, strict=True) if u.case and value is None],
        )
        return values


FETCH_BATCH = FetchBatch()


def load_certificate(session: Session, certificate_id: str) -> tuple[StoredCertificate, str] | None:
    """The certificate and its holder key: the newest stored version of that id (a GB/T id
    names one version; an issuer-unique id is shared by all its versions)."""
    query = (
        select(*_STORED_COLUMNS, Certificate.holder_key)
        .outerjoin(Revocation, Revocation.lineage == Certificate.lineage)
        .where(Certificate.certificate_id == certificate_id)
        .order_by(Certificate.version.desc())
        .limit(1)
    )
    row = session.execute(query).one_or_none()
    if row is None:
        return None
    *columns, holder_key = row
    return _stored(columns), str(holder_key)


def holder_key_of(session: Session, certificate_id: str, version: int) -> str | None:
    return session.execute(
        select(Certificate.holder_key).where(
            Certificate.certificate_id == certificate_id, Certificate.version == version
        )
    ).scalar_one_or_none()


@dataclass(frozen=True, slots=True)
class VerifyResult:
    valid: bool
    status: CertificateStatus | None
    reasons: tuple[str, ...]
    payload: CertificatePayload | None
    issuer_name: str
    key_id: str
    stored: bool


def verify_shown(
    session: Session, registry: Registry, envelope_bytes: bytes, *, today: dt.date
) -> VerifyResult:
    """Verify an envelope shown at a window: signature, payload, and what the hub knows of it.

    Unreadable bytes are INVALID_ARGUMENT; a readable envelope that fails a check is an
    answer (``valid`` false with reasons), because telling the window why is the point.
    """
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
    verification = verify_envelope(
        envelope,
        expected_payload_type=CERTIFICATE_PAYLOAD_TYPE,
        keys=registry.keys,
        owner=payload.issuer_code,
        signed_on=payload.issued_on,
    )
    reasons.extend(verification.reasons)
    key_id = verification.verified[0].public_key.key_id if verification.verified else ""
    if not verification.verified and not verification.reasons:
        reasons.append("no signature verifies")
    stored_row = session.execute(
        select(Certificate.envelope_sha256, Certificate.is_current, Revocation.envelope)
        .outerjoin(Revocation, Revocation.lineage == Certificate.lineage)
        .where(
            Certificate.certificate_id == payload.certificate_id,
            Certificate.version == payload.version,
        )
    ).one_or_none()
    stored = False
    if stored_row is None:
        revoked = session.get(Revocation, payload.lineage) is not None
        superseded = False
        reasons.append("the hub holds no such certificate version")
    else:
        stored = stored_row[0] == hashlib.sha256(envelope_bytes).hexdigest()
        superseded = not stored_row[1]
        revoked = stored_row[2] is not None
        if not stored:
            reasons.append("the hub holds different bytes for this certificate version")
    status = compute_status(
        valid_from=payload.valid_from,
        valid_until=payload.valid_until,
        today=today,
        revoked=revoked,
        superseded=superseded,
    )
    if status is not CertificateStatus.VALID:
        reasons.append(f"status is {status}")
    return VerifyResult(
        valid=not reasons,
        status=status,
        reasons=tuple(reasons),
        payload=payload,
        issuer_name=department.name if department else "",
        key_id=key_id,
        stored=stored,
    )


# --- cache encoding: the holder view travels through the cache as bytes -------------------


# JSON has no bytes or dates: fields of those types travel as base64 and ISO 8601 text; the
# rest as themselves. Derived from StoredCertificate's annotations, so a new field is
# cached without touching the codec (and a field of a type JSON cannot carry fails here).
_JSON_FORMS: dict[type, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    bytes: (lambda b: base64.b64encode(b).decode(), base64.b64decode),
    dt.date: (dt.date.isoformat, dt.date.fromisoformat),
}
_JSON_NATIVE = frozenset({str, int, bool, type(None)})


def _json_forms() -> tuple[tuple[int, Callable[[Any], Any], Callable[[Any], Any]], ...]:
    forms = []
    for i, (name, hint) in enumerate(typing.get_type_hints(StoredCertificate).items()):
        kinds = set(typing.get_args(hint) or (hint,))
        converted = kinds & _JSON_FORMS.keys()
        if len(converted) > 1 or not kinds - converted <= _JSON_NATIVE:
            raise TypeError(f"StoredCertificate.{name}: no JSON form for {hint}")
        if converted:
            forms.append((i, *_JSON_FORMS[converted.pop()]))
    return tuple(forms)


# (field position, encode, decode) of the fields that need converting; None stays null.
_CONVERTED = _json_forms()
_field_values = operator.attrgetter(*STORED_FIELDS)


def encode_holder(view: HolderView) -> bytes:
    """The view as JSON: its counter, then a list per certificate of its fields in order."""
    rows = []
    for certificate in view.certificates:
        row = list(_field_values(certificate))
        for i, encode, _ in _CONVERTED:
            if row[i] is not None:
                row[i] = encode(row[i])
        rows.append(row)
    return json.dumps([view.version, rows], separators=(",", ":")).encode()


def decode_holder(data: bytes) -> HolderView:
    version, rows = cast("tuple[int, list[list[Any]]]", json.loads(data))
    return HolderView(version, [_decode_one(row) for row in rows])


def _decode_one(row: list[Any]) -> StoredCertificate:
    for i, _, decode in _CONVERTED:
        if row[i] is not None:
            row[i] = decode(row[i])
    return StoredCertificate(*row)
