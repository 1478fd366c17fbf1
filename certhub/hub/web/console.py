"""What each console page shows, built from the hub's services; no HTTP here.

Every method that shows something to a person first records it in the audit log through
``Casework.console_view`` (the group committer, like an RPC): the view's entry is committed
before the page is built, and a refusal is audited too.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.orm import Session

from certhub.hub.audit import reads
from certhub.hub.casework import Casework
from certhub.hub.errors import HubError, InvalidArgument, NotFound
from certhub.hub.registry import Principal, Registry, Role
from certhub.hub.services import intake, stats
from certhub.hub.services.cases import CST
from certhub.hub.store.engine import session_scope, stored_utc
from certhub.hub.store.models import LogCheckpoint
from certhub.signing import ProofError, merkle
from certhub.signing.note import split_note

# Audit entries on one console page: a screenful at 1280 px, and a bounded query.
AUDIT_PAGE_SIZE = 50
# Points of the public "log size over time" chart: enough for a smooth line, few enough
# that the page stays small and the sampling costs that many primary-key lookups.
LOG_SIZE_POINTS = 60
# Reform targets the dashboard draws as lines: the round figures below what Gulou reported
# (92.07% of items exempt, 80.97% of cases using an e-certificate); `certhub console`
# options override them.
DEFAULT_EXEMPTION_TARGET = 0.90
DEFAULT_USAGE_TARGET = 0.80
# The dashboard's default period: the last twelve months, this one included.
DEFAULT_MONTHS = 12

AUDITORS = frozenset({Role.AUDITOR})


@dataclass(frozen=True, slots=True)
class Targets:
    exemption: float = DEFAULT_EXEMPTION_TARGET
    usage: float = DEFAULT_USAGE_TARGET


@dataclass(frozen=True, slots=True)
class Dashboard:
    period: stats.PeriodStats
    registry: Registry
    targets: Targets
    audit_index: int

    @property
    def chart_data(self) -> dict[str, object]:
        """What the charts draw (the tables beside them show the same numbers)."""
        p = self.period
        months = p.breakdown(stats.Breakdown.MONTH)
        departments = p.breakdown(stats.Breakdown.DEPARTMENT)
        labels = {c: d.name for c, d in self.registry.departments.items()}
        return {
            "months": [g.key for g in months],
            # A month without cases has no rate: a gap in the line, not a fall to 0%.
            "usage": [round(g.usage_rate * 100, 2) if g.registered else None for g in months],
            "exemption": [
                None if g.exemption_rate is None else round(g.exemption_rate * 100, 2)
                for g in months
            ],
            "registered": [g.registered for g in months],
            "targets": {
                "usage": round(self.targets.usage * 100, 2),
                "exemption": round(self.targets.exemption * 100, 2),
            },
            "departments": [g.label for g in departments],
            "department_usage": [round(g.usage_rate * 100, 2) for g in departments],
            "certificates_by_department": [
                [labels.get(code, code), n]
                for code, n in sorted(
                    p.base.certificates_by_department.items(), key=lambda kv: -kv[1]
                )
            ],
            "certificates_by_kind": sorted(p.base.certificates_by_kind.items()),
        }


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """The audit browser's form; empty strings mean "no filter"."""

    principal: str = ""
    case_number: str = ""
    action: str = ""
    since: str = ""
    until: str = ""
    page_token: str = ""

    def query_string(self, **changes: str) -> str:
        values = {
            "principal": self.principal,
            "case": self.case_number,
            "action": self.action,
            "since": self.since,
            "until": self.until,
            "page": self.page_token,
        } | changes
        return urlencode({k: v for k, v in values.items() if v})


@dataclass(frozen=True, slots=True)
class AuditRow:
    index: int
    time: str
    principal: str
    action: str
    outcome: str
    service_item: str
    case_number: str
    holder: str
    method: str


@dataclass(frozen=True, slots=True)
class AuditResults:
    rows: tuple[AuditRow, ...]
    next_page_token: str
    holder_commitment: str | None
    audit_index: int


@dataclass(frozen=True, slots=True)
class Receipt:
    """What a window hands an applicant about one access: enough to check, in a browser,
    that the entry is in the log the hub signed."""

    origin: str
    index: int
    leaf_hash: str
    checkpoint: str

    def to_json(self) -> str:
        return json.dumps(
            {
                "log": self.origin,
                "index": self.index,
                "leaf_hash": self.leaf_hash,
                "checkpoint": self.checkpoint,
            },
            ensure_ascii=False,
            indent=1,
        )


@dataclass(frozen=True, slots=True)
class EntryDetail:
    index: int
    leaf: str
    fields: Mapping[str, object]
    leaf_hash: str
    tree_size: int
    proof: tuple[str, ...]
    proof_verified: bool
    receipt: Receipt | None
    audit_index: int


@dataclass(frozen=True, slots=True)
class SignatureLine:
    name: str
    key_hash: str


@dataclass(frozen=True, slots=True)
class Transparency:
    origin: str
    size: int
    root_hex: str
    note: str
    signatures: tuple[SignatureLine, ...]
    vkey: str
    history: tuple[tuple[str, int], ...] = field(default=())


def _time(value: object) -> str:
    """An entry's RFC 3339 UTC time shown in China Standard Time."""
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    return parsed.astimezone(CST).strftime("%Y-%m-%d %H:%M:%S")


def _date_bound(value: str, field_name: str, *, end: bool) -> dt.datetime | None:
    if not value:
        return None
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise InvalidArgument.field(
            field_name, f"{value!r} is not a date (YYYY-MM-DD)", reason="INVALID_TIME"
        ) from None
    if end:
        day += dt.timedelta(days=1)
    return dt.datetime.combine(day, dt.time(), CST).astimezone(dt.UTC)


class Console:
    """The console's pages over one hub; ``caller`` is the authenticated principal."""

    def __init__(self, work: Casework, *, targets: Targets | None = None) -> None:
        self.work = work
        self.hub = work.hub
        self.targets = targets or Targets()

    # --- reform dashboard -----------------------------------------------------------------

    def default_period(self) -> tuple[str, str]:
        today = self.hub.clock().astimezone(CST).date()
        first = today.replace(day=1)
        for _ in range(DEFAULT_MONTHS - 1):
            first = (first - dt.timedelta(days=1)).replace(day=1)
        return first.isoformat(), today.isoformat()

    async def dashboard(self, caller: Principal, since: str, until: str) -> Dashboard:
        query = stats.parse_query(since, until, [b.value for b in stats.Breakdown])
        index = await self.work.console_view(
            caller, "/dashboard?" + urlencode(_drop_empty({"since": since, "until": until}))
        )
        return Dashboard(
            period=await self.work.period_stats(query),
            registry=self.hub.registry(),
            targets=self.targets,
            audit_index=index,
        )

    # --- registry -------------------------------------------------------------------------

    async def registry(self, caller: Principal) -> tuple[Registry, int]:
        return self.hub.registry(), await self.work.console_view(caller, "/registry")

    # --- audit browser --------------------------------------------------------------------

    async def audit_query(
        self,
        caller: Principal,
        form: AuditFilter,
        *,
        id_type: str = "",
        holder_id: str = "",
    ) -> AuditResults:
        """Entries matching the form, newest first. A holder is given as an ID and looked
        up by its commitment; the ID itself is neither stored nor echoed."""
        commitment: str | None = None
        what = "/audit?" + form.query_string()
        try:
            if id_type or holder_id:
                holder = intake.checked_holder(self.hub.registry(), id_type, holder_id)
                commitment = self.hub.commitment(holder.key())
            where = reads.QueryFilter(
                holder_commitment=commitment,
                principal=reads.check_filter_text(form.principal, field="principal"),
                action=reads.check_filter_text(form.action, field="action"),
                case_number=reads.check_filter_text(form.case_number, field="case"),
                since=_date_bound(form.since, "since", end=False),
                until=_date_bound(form.until, "until", end=True),
            )
            before = reads.decode_page_token(form.page_token)
        except HubError as error:
            await self.work.console_refuse(caller, what, error, holder=commitment, roles=AUDITORS)
        index = await self.work.console_view(
            caller,
            what,
            holder=commitment,
            case_number=form.case_number or None,
            roles=AUDITORS,
        )
        page = await asyncio.to_thread(self._query, where, before)
        rows = tuple(
            AuditRow(
                index=e.index,
                time=_time(e.fields.get("time")),
                principal=str(e.fields.get("principal") or ""),
                action=str(e.fields.get("action") or ""),
                outcome=str(e.fields.get("outcome") or ""),
                service_item=str(e.fields.get("service_item") or ""),
                case_number=str(e.fields.get("case") or ""),
                holder=str(e.fields.get("holder") or ""),
                method=str(e.fields.get("method") or ""),
            )
            for e in page.entries
        )
        return AuditResults(rows, page.next_page_token, commitment, index)

    def _query(self, where: reads.QueryFilter, before: int | None) -> reads.Page:
        with session_scope(self.hub.sessions) as session:
            return reads.query(session, where, page_size=AUDIT_PAGE_SIZE, before=before)

    async def entry(self, caller: Principal, index: int) -> EntryDetail:
        """One entry, its inclusion proof in the latest checkpoint, checked here too, and
        the receipt that lets anyone check it in a browser."""
        audit_index = await self.work.console_view(caller, f"/audit/entry/{index}", roles=AUDITORS)
        return await asyncio.to_thread(self._entry, index, audit_index)

    def _entry(self, index: int, audit_index: int) -> EntryDetail:
        with session_scope(self.hub.sessions) as session:
            if index >= reads.log_size(session):
                raise NotFound(f"audit entry {index} does not exist", reason="NO_SUCH_ENTRY")
            latest = reads.latest_checkpoint(session)
            proof: tuple[bytes, ...] = ()
            if latest is None or index >= latest.size:
                _, leaves = reads.entries(session, index, index + 1)
                leaf, size = leaves[0], latest.size if latest else 0
            else:
                found = reads.inclusion_proof(session, index, latest.size)
                leaf, proof, size = found.leaf, found.hashes, found.tree_size
        leaf_hash = merkle.leaf_hash(leaf)
        verified = False
        receipt = None
        if latest is not None and index < latest.size:
            try:
                merkle.verify_inclusion(
                    leaf_index=index,
                    tree_size=latest.size,
                    leaf_hash=leaf_hash,
                    proof=proof,
                    root=latest.root,
                )
                verified = True
            except ProofError:
                verified = False
            receipt = Receipt(
                origin=self.hub.audit_log.keys.origin,
                index=index,
                leaf_hash=leaf_hash.hex(),
                checkpoint=latest.note,
            )
        return EntryDetail(
            index=index,
            leaf=leaf.decode("utf-8", errors="replace"),
            fields=json.loads(leaf),
            leaf_hash=leaf_hash.hex(),
            tree_size=size,
            proof=tuple(h.hex() for h in proof),
            proof_verified=verified,
            receipt=receipt,
            audit_index=audit_index,
        )

    # --- public transparency page (no login, no personal data) ----------------------------

    def transparency(self) -> Transparency:
        keys = self.hub.audit_log.keys
        with session_scope(self.hub.sessions) as session:
            latest = reads.latest_checkpoint(session)
            history = _size_history(session, latest.size if latest else 0)
        if latest is None:
            note, size, root = "", 0, merkle.EMPTY_ROOT
            signatures: tuple[SignatureLine, ...] = ()
        else:
            note, size, root = latest.note, latest.size, latest.root
            _, lines = split_note(note)
            signatures = tuple(SignatureLine(name, raw[:4].hex()) for name, raw in lines)
        return Transparency(
            origin=keys.origin,
            size=size,
            root_hex=root.hex(),
            note=note,
            signatures=signatures,
            vkey=keys.signer.vkey,
            history=history,
        )

    def public_proof(self, index: int, size: int) -> dict[str, object]:
        """The audit path of one leaf: hashes only, nothing of the entry itself."""
        with session_scope(self.hub.sessions) as session:
            found = reads.inclusion_proof(session, index, size)
        return {
            "leaf_index": found.leaf_index,
            "tree_size": found.tree_size,
            "hashes": [h.hex() for h in found.hashes],
        }


def _drop_empty(values: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in values.items() if v}


def _size_history(session: Session, size: int) -> tuple[tuple[str, int], ...]:
    """(time, size) of up to LOG_SIZE_POINTS checkpoints spread evenly over the sizes: one
    primary-key lookup each, however many checkpoints there are."""
    if size == 0:
        return ()
    targets = sorted({max(1, size * k // LOG_SIZE_POINTS) for k in range(1, LOG_SIZE_POINTS + 1)})
    points: dict[int, str] = {}
    for target in targets:
        row = session.execute(
            select(LogCheckpoint.size, LogCheckpoint.created_at)
            .where(LogCheckpoint.size >= target)
            .order_by(LogCheckpoint.size)
            .limit(1)
        ).one_or_none()
        if row is not None:
            created = stored_utc(row.created_at)
            points[int(row.size)] = created.astimezone(CST).strftime("%Y-%m-%d %H:%M")
    return tuple((t, s) for s, t in sorted(points.items()))


def fingerprint(vkey: str) -> str:
    """A short, comparable form of the log's verifier key (SHA-256, first 8 bytes)."""
    return hashlib.sha256(vkey.encode()).hexdigest()[:16]
