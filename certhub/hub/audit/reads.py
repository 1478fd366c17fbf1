"""Reading the audit log: filtered queries, checkpoints, RFC 9162 proofs and raw entries.

Every function takes the caller's session (one read transaction) and reads only what it
needs: a proof reads the O(log n) perfect-subtree rows its ``certhub.signing.merkle`` plan names in
one query, never the leaves; a query walks an index newest first and stops after one page.
Bad requests raise ``InvalidArgument``; sizes and indices past the end of the log raise
``OutOfRange``. Roles and the audit entry of a call are the caller's business
(``certhub.hub.auditing``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Select, TextClause, func, select, text
from sqlalchemy.orm import Session

from certhub.hub.audit.entry import parse_leaf
from certhub.hub.errors import InvalidArgument, NotFound, OutOfRange
from certhub.hub.store.models import (
    AuditCertificate,
    AuditEntry,
    CosignedCheckpoint,
    LogCheckpoint,
    TreeNode,
)
from certhub.signing import merkle

# QueryAudit page size when the request names none: one screen of an auditor's table.
DEFAULT_PAGE_SIZE = 50
# Largest QueryAudit page: a page's leaves are parsed and sent in one message, and 500
# entries of ~400 bytes stay far below the gRPC message limit and well under 20 ms to read.
MAX_PAGE_SIZE = 500
# Largest GetEntries answer. Monitors page through the log with it; 1,000 leaves of a few
# hundred bytes is a few hundred KiB per message, the same order as CT logs' get-entries.
MAX_ENTRIES_PER_CALL = 1000
# Page tokens carry a version prefix so that a future format is rejected cleanly.
_TOKEN_PREFIX = "a1:"  # noqa: S105 - a format tag, not a secret
# Longest page token we decode: the prefix plus a 20-digit index, base64 with padding.
_MAX_TOKEN_LENGTH = 64
# Indices are BIGINT columns: a larger value must be refused before it reaches the database.
_MAX_INDEX = 2**63 - 1
# Longest filter string accepted; wider than any column it is compared with.
_MAX_FILTER_LENGTH = 256


@dataclass(frozen=True, slots=True)
class QueryFilter:
    """QueryAudit filters, ANDed; ``None`` matches everything."""

    holder_commitment: str | None = None
    principal: str | None = None
    action: str | None = None
    certificate_id: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    # The console's query by case (ix_audit_entries_case).
    case_number: str | None = None


@dataclass(frozen=True, slots=True)
class EntryView:
    """One entry as stored: its index, the exact leaf bytes and their decoded fields."""

    index: int
    leaf: bytes
    fields: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class Page:
    entries: tuple[EntryView, ...]
    next_page_token: str


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    size: int
    root: bytes
    note: str


@dataclass(frozen=True, slots=True)
class InclusionProof:
    leaf_index: int
    tree_size: int
    hashes: tuple[bytes, ...]
    leaf: bytes


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    first_size: int
    second_size: int
    hashes: tuple[bytes, ...]


# --- queries ----------------------------------------------------------------------------------


def parse_time(value: str, *, field: str) -> dt.datetime | None:
    """An RFC 3339 time with an offset (``Z`` or ``+08:00``), in UTC; empty = unbounded."""
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidArgument.field(
            field, f"{value!r} is not an RFC 3339 time", reason="INVALID_TIME"
        ) from exc
    if parsed.tzinfo is None:
        raise InvalidArgument.field(
            field, f"{value!r} has no UTC offset (add Z or +08:00)", reason="INVALID_TIME"
        )
    return parsed.astimezone(dt.UTC)


def check_filter_text(value: str, *, field: str) -> str | None:
    if not value:
        return None
    if len(value) > _MAX_FILTER_LENGTH:
        raise InvalidArgument.field(
            field, f"is {len(value)} characters, more than {_MAX_FILTER_LENGTH}"
        )
    if not value.isprintable():
        # PostgreSQL rejects text containing NUL outright (a DataError, not an answer).
        raise InvalidArgument.field(field, "contains control or other non-printable characters")
    return value


def page_size_of(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument.field("page_size", "must not be negative")
    if requested > MAX_PAGE_SIZE:
        raise InvalidArgument.field(
            "page_size",
            f"{requested} exceeds the limit of {MAX_PAGE_SIZE}",
            reason="PAGE_TOO_LARGE",
        )
    return requested or DEFAULT_PAGE_SIZE


def encode_page_token(last_index: int) -> str:
    return base64.urlsafe_b64encode(f"{_TOKEN_PREFIX}{last_index}".encode()).decode()


def decode_page_token(token: str) -> int | None:
    """The index the previous page ended at (exclusive upper bound of this page)."""
    if not token:
        return None
    bad = InvalidArgument.field(
        "page_token", "is not a token this server issued", reason="INVALID_PAGE_TOKEN"
    )
    if len(token) > _MAX_TOKEN_LENGTH:
        raise bad
    try:
        text = base64.urlsafe_b64decode(token.encode("ascii")).decode("ascii")
    except (binascii.Error, ValueError, UnicodeError) as exc:
        raise bad from exc
    digits = text.removeprefix(_TOKEN_PREFIX)
    if digits == text or not digits.isdigit() or not digits.isascii():
        raise bad
    index = int(digits)
    if index > _MAX_INDEX:
        raise bad
    return index


def query(session: Session, where: QueryFilter, *, page_size: int, before: int | None) -> Page:
    """Entries matching ``where`` with index below ``before``, newest first, one page."""
    if where.since and where.until and where.since >= where.until:
        raise InvalidArgument.field(
            "until", "must be later than since", reason="INVALID_TIME_RANGE"
        )
    stmt: Select[int, bytes] = select(AuditEntry.idx, AuditEntry.leaf)
    if where.certificate_id is not None:
        stmt = stmt.join(AuditCertificate, AuditCertificate.idx == AuditEntry.idx).where(
            AuditCertificate.certificate_id == where.certificate_id
        )
    conditions = []
    if where.holder_commitment is not None:
        conditions.append(AuditEntry.holder_commitment == where.holder_commitment)
    if where.principal is not None:
        conditions.append(AuditEntry.principal == where.principal)
    if where.action is not None:
        conditions.append(AuditEntry.action == where.action)
    if where.case_number is not None:
        conditions.append(AuditEntry.case_number == where.case_number)
    if where.since is not None:
        conditions.append(AuditEntry.time >= where.since)
    if where.until is not None:
        conditions.append(AuditEntry.time < where.until)
    if before is not None:
        conditions.append(AuditEntry.idx < before)
    stmt = stmt.where(*conditions).order_by(AuditEntry.idx.desc()).limit(page_size + 1)
    rows = session.execute(stmt).all()
    more = len(rows) > page_size
    rows = rows[:page_size]
    entries = tuple(EntryView(index=i, leaf=leaf, fields=parse_leaf(leaf)) for i, leaf in rows)
    token = encode_page_token(entries[-1].index) if more and entries else ""
    return Page(entries=entries, next_page_token=token)


# --- the tree ---------------------------------------------------------------------------------


def latest_checkpoint(session: Session) -> StoredCheckpoint | None:
    row = session.execute(
        select(LogCheckpoint.size, LogCheckpoint.root, LogCheckpoint.note)
        .order_by(LogCheckpoint.size.desc())
        .limit(1)
    ).one_or_none()
    return None if row is None else StoredCheckpoint(size=row[0], root=row[1], note=row[2])


def checkpoint(session: Session) -> StoredCheckpoint:
    latest = latest_checkpoint(session)
    if latest is None:
        raise NotFound("the audit log has no checkpoint yet", reason="LOG_EMPTY")
    return latest


def log_size(session: Session) -> int:
    """Size of the latest signed checkpoint: what proofs and entries may refer to."""
    size: int | None = session.execute(select(func.max(LogCheckpoint.size))).scalar_one()
    return size or 0


def fetch_nodes(session: Session, nodes: Sequence[merkle.NodeId]) -> dict[merkle.NodeId, bytes]:
    """The stored hashes of ``nodes``, in one query of primary-key point lookups."""
    if not nodes:
        return {}
    params: dict[str, int] = {}
    for n, (level, index) in enumerate(nodes):
        params[f"l{n}"] = level
        params[f"i{n}"] = index
    rows = session.connection().execute(_nodes_statement(len(nodes)), params)
    return {(level, index): bytes(h) for level, index, h in rows}


@functools.cache
def _nodes_statement(count: int) -> TextClause:
    # The proof hot path: a prepared text per node count (at most ~2 log2 n of them) costs
    # a fifth of compiling the equivalent expression each time (0.2 ms against 1 ms per
    # proof, measured by bench/audit_bench.py), and an OR of point lookups is the form both
    # SQLite and PostgreSQL answer from the primary key (SQLite scans for row-value IN).
    condition = " OR ".join(f"(level = :l{n} AND idx = :i{n})" for n in range(count))
    table = TreeNode.__tablename__
    return text(f"SELECT level, idx, hash FROM {table} WHERE {condition}")  # noqa: S608


def _assemble(session: Session, plan: merkle.ProofPlan) -> list[bytes]:
    hashes = fetch_nodes(session, plan.nodes)
    # A missing node below the signed size means the store is damaged, which only
    # `certhub audit verify` can diagnose; the caller gets a retryable, honest answer.
    missing = [n for n in plan.nodes if n not in hashes]
    if missing:
        level, index = missing[0]
        raise NotFound(
            f"tree node (level {level}, index {index}) is missing from the store; "
            "run `certhub audit verify`",
            reason="TREE_NODE_MISSING",
        )
    return plan.assemble(hashes)


def _resolve_size(requested: int, size: int, *, field: str) -> int:
    if requested == 0:
        return size
    if requested > size:
        raise OutOfRange(
            f"{field}: {requested} is past the latest checkpoint (size {size})",
            reason="TREE_SIZE_PAST_LOG",
        )
    return requested


def inclusion_proof(session: Session, leaf_index: int, tree_size: int) -> InclusionProof:
    """RFC 9162 inclusion proof of leaf ``leaf_index`` in the tree of ``tree_size`` leaves
    (0 = the latest checkpoint's size)."""
    # The log's size and the leaf in one round trip: with the nodes, a proof is two queries.
    size, leaf = 0, None
    if leaf_index <= _MAX_INDEX:
        latest, leaf = session.execute(
            select(
                select(func.max(LogCheckpoint.size)).scalar_subquery(),
                select(AuditEntry.leaf).where(AuditEntry.idx == leaf_index).scalar_subquery(),
            )
        ).one()
        size = latest or 0
    if leaf_index >= size:
        raise OutOfRange(
            f"leaf_index: {leaf_index} is past the latest checkpoint (size {size})",
            reason="LEAF_INDEX_PAST_LOG",
        )
    tree = _resolve_size(tree_size, size, field="tree_size")
    if leaf_index >= tree:
        raise InvalidArgument.field(
            "leaf_index", f"{leaf_index} is not below tree_size {tree}", reason="INDEX_NOT_IN_TREE"
        )
    hashes = _assemble(session, merkle.inclusion_plan(leaf_index, tree))
    if leaf is None:
        raise NotFound(
            f"audit entry {leaf_index} is missing from the store; run `certhub audit verify`",
            reason="AUDIT_ENTRY_MISSING",
        )
    return InclusionProof(
        leaf_index=leaf_index, tree_size=tree, hashes=tuple(hashes), leaf=bytes(leaf)
    )


def latest_cosigned_checkpoint(session: Session) -> StoredCheckpoint | None:
    """The newest checkpoint published with the witnesses' cosignatures (its note carries
    the log's signature and theirs), or None if witnessing is off or none reached quorum."""
    row = session.execute(
        select(CosignedCheckpoint.size, LogCheckpoint.root, CosignedCheckpoint.note)
        .join(LogCheckpoint, LogCheckpoint.size == CosignedCheckpoint.size)
        .order_by(CosignedCheckpoint.size.desc())
        .limit(1)
    ).one_or_none()
    return None if row is None else StoredCheckpoint(size=row[0], root=bytes(row[1]), note=row[2])


def consistency_proof(session: Session, first_size: int, second_size: int) -> ConsistencyProof:
    """RFC 9162 consistency proof from ``first_size`` to ``second_size`` (0 = latest)."""
    if first_size == 0:
        raise InvalidArgument.field(
            "first_size", "must be at least 1 (every tree extends the empty tree)"
        )
    size = log_size(session)
    if first_size > size:
        raise OutOfRange(
            f"first_size: {first_size} is past the latest checkpoint (size {size})",
            reason="TREE_SIZE_PAST_LOG",
        )
    second = _resolve_size(second_size, size, field="second_size")
    if first_size > second:
        raise InvalidArgument.field(
            "first_size",
            f"{first_size} is greater than second_size {second}",
            reason="SIZES_OUT_OF_ORDER",
        )
    if first_size == second:
        return ConsistencyProof(first_size=first_size, second_size=second, hashes=())
    hashes = _assemble(session, merkle.consistency_plan(first_size, second))
    return ConsistencyProof(first_size=first_size, second_size=second, hashes=tuple(hashes))


def entries(session: Session, start: int, end: int) -> tuple[int, list[bytes]]:
    """Raw leaves ``[start, end)`` (at most MAX_ENTRIES_PER_CALL); returns (start, leaves)."""
    if end <= start:
        raise InvalidArgument.field("end", f"{end} must be greater than start {start}")
    size = log_size(session)
    if start >= size:
        raise OutOfRange(
            f"start: {start} is past the latest checkpoint (size {size})",
            reason="INDEX_PAST_LOG",
        )
    stop = min(end, size, start + MAX_ENTRIES_PER_CALL)
    rows = session.execute(
        select(AuditEntry.idx, AuditEntry.leaf)
        .where(AuditEntry.idx >= start, AuditEntry.idx < stop)
        .order_by(AuditEntry.idx)
    ).all()
    leaves: list[bytes] = []
    for expected, (index, leaf) in enumerate(rows, start=start):
        if index != expected:
            break
        leaves.append(bytes(leaf))
    if not leaves:
        raise NotFound(
            f"audit entry {start} is missing from the store; run `certhub audit verify`",
            reason="AUDIT_ENTRY_MISSING",
        )
    return start, leaves


def entry_principal(leaf: bytes) -> str:
    principal = parse_leaf(leaf).get("principal")
    return principal if isinstance(principal, str) else ""
