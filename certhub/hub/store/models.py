"""The database schema. Alembic migrations in ``migrations/`` create exactly this.

Envelope bytes are stored verbatim (what the department signed is what the hub serves);
the parsed fields next to them are an index, never the source of truth.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Column widths. Identifiers are bounded by the domain rules (certhub.hub.domain); these only need
# to be at least as wide as what those rules admit.
ID_WIDTH = 160
CODE_WIDTH = 64
NAME_WIDTH = 256
HOLDER_KEY_WIDTH = 160

# 64-bit ids on PostgreSQL; SQLite's INTEGER is already 64-bit and only it autoincrements.
BIGINT = BigInteger().with_variant(Integer, "sqlite")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class RegistryVersion(Base):
    """Every applied registry.toml, in order; hub processes load the newest."""

    __tablename__ = "registry_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    digest: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    applied_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class Certificate(Base):
    """One version of one certificate."""

    __tablename__ = "certificates"
    __table_args__ = (
        UniqueConstraint("certificate_id", "version", name="uq_certificates_id_version"),
        # The fetch path: current certificates of one holder.
        Index("ix_certificates_holder_current", "holder_key", "is_current"),
        Index("ix_certificates_lineage", "lineage", "version"),
    )

    id: Mapped[int] = mapped_column(BIGINT, primary_key=True)
    certificate_id: Mapped[str] = mapped_column(String(ID_WIDTH))
    version: Mapped[int] = mapped_column(Integer)
    # Versions of one certificate share a lineage (see certhub.hub.domain.identifier.lineage_of).
    lineage: Mapped[str] = mapped_column(String(ID_WIDTH))
    # False once a higher version of the lineage is stored.
    is_current: Mapped[bool] = mapped_column(Boolean)
    holder_key: Mapped[str] = mapped_column(String(HOLDER_KEY_WIDTH))
    type_code: Mapped[str] = mapped_column(String(CODE_WIDTH))
    kind: Mapped[str] = mapped_column(String(16))
    issuer_code: Mapped[str] = mapped_column(String(CODE_WIDTH))
    issued_on: Mapped[dt.date] = mapped_column(Date)
    valid_from: Mapped[dt.date] = mapped_column(Date)
    valid_until: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    envelope: Mapped[bytes] = mapped_column(LargeBinary)
    envelope_sha256: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(64))
    attachment_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    legacy_uscc: Mapped[bool] = mapped_column(Boolean, default=False)
    stored_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    # The audit entry that admitted this version (its leaf commits to envelope_sha256);
    # None for rows stored before migration 0003.
    audit_idx: Mapped[int | None] = mapped_column(BIGINT, nullable=True)


class Attachment(Base):
    """Attachment files, content-addressed: one row per distinct file."""

    __tablename__ = "attachments"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    media_type: Mapped[str] = mapped_column(String(CODE_WIDTH))
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Revocation(Base):
    """A revocation ends a whole lineage: every version of the certificate."""

    __tablename__ = "revocations"

    lineage: Mapped[str] = mapped_column(String(ID_WIDTH), primary_key=True)
    certificate_id: Mapped[str] = mapped_column(String(ID_WIDTH))
    reason: Mapped[str] = mapped_column(Text)
    revoked_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    envelope: Mapped[bytes] = mapped_column(LargeBinary)
    recorded_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    # The audit entry that admitted this revocation; None for rows stored before 0003.
    audit_idx: Mapped[int | None] = mapped_column(BIGINT, nullable=True)


class HolderState(Base):
    """How often a holder's certificates changed: moved in the transaction of every push and
    revocation. A fetch answered from the cache compares the counter its cached view was
    read at with this row, in its own group commit (``certhub.hub.services.freshness``), so no
    lost cache invalidation can serve a superseded state."""

    __tablename__ = "holder_states"

    holder_key: Mapped[str] = mapped_column(String(HOLDER_KEY_WIDTH), primary_key=True)
    version: Mapped[int] = mapped_column(BIGINT)


class Case(Base):
    """Cases (办件) that fetched, for the usage KPI."""

    __tablename__ = "cases"

    case_number: Mapped[str] = mapped_column(String(CODE_WIDTH * 2), primary_key=True)
    service_item_code: Mapped[str] = mapped_column(String(CODE_WIDTH))
    first_fetch_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    # True once any fetch of the case returned at least one certificate.
    served: Mapped[bool] = mapped_column(Boolean)


class AuditEntry(Base):
    """One leaf of the audit log; ``leaf`` holds the exact bytes hashed into the tree."""

    __tablename__ = "audit_entries"
    __table_args__ = (
        Index("ix_audit_entries_holder", "holder_commitment", "idx"),
        Index("ix_audit_entries_principal", "principal", "idx"),
        Index("ix_audit_entries_action", "action", "idx"),
        Index("ix_audit_entries_time", "time"),
        # Closing a case checks its fetches; the console queries the log by case.
        Index("ix_audit_entries_case", "case_number", "idx"),
    )

    idx: Mapped[int] = mapped_column(BIGINT, primary_key=True, autoincrement=False)
    leaf: Mapped[bytes] = mapped_column(LargeBinary)
    time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    principal: Mapped[str] = mapped_column(String(NAME_WIDTH))
    action: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(32))
    holder_commitment: Mapped[str | None] = mapped_column(String(64), nullable=True)
    service_item_code: Mapped[str | None] = mapped_column(String(CODE_WIDTH), nullable=True)
    case_number: Mapped[str | None] = mapped_column(String(CODE_WIDTH * 2), nullable=True)


class AuditCertificate(Base):
    """Which audit entries name which certificate ids (the by-certificate query)."""

    __tablename__ = "audit_certificates"

    certificate_id: Mapped[str] = mapped_column(String(ID_WIDTH), primary_key=True)
    idx: Mapped[int] = mapped_column(BIGINT, primary_key=True, autoincrement=False)


class TreeNode(Base):
    """Hash of every perfect subtree of the audit Merkle tree: (level, index) -> hash.

    With these, appends and proofs touch O(log n) rows (signing.merkle plans which).
    """

    __tablename__ = "tree_nodes"

    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(BIGINT, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary)


class LogHead(Base):
    """The single row that serialises appends: the current tree size and root.

    Appenders lock it (``SELECT ... FOR UPDATE`` on PostgreSQL, the write lock on SQLite), so
    any number of hub processes extend one gap-free sequence.
    """

    __tablename__ = "log_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(BigInteger)
    root: Mapped[bytes] = mapped_column(LargeBinary)
    # The hashes of certhub.signing.merkle.frontier(size), concatenated: what the next append needs.
    frontier: Mapped[bytes] = mapped_column(LargeBinary)


class LogCheckpoint(Base):
    """Every signed checkpoint the hub published."""

    __tablename__ = "checkpoints"

    size: Mapped[int] = mapped_column(BIGINT, primary_key=True, autoincrement=False)
    root: Mapped[bytes] = mapped_column(LargeBinary)
    note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class CaseFile(Base):
    """A case (办件) as its window registered and closed it: the usage KPI's denominator is
    every case handled, not only the cases that fetched (``cases``)."""

    __tablename__ = "case_files"
    __table_args__ = (
        Index("ix_case_files_month", "registered_month", "service_item_code"),
        Index("ix_case_files_registered_at", "registered_at"),
    )

    case_number: Mapped[str] = mapped_column(String(CODE_WIDTH * 2), primary_key=True)
    service_item_code: Mapped[str] = mapped_column(String(CODE_WIDTH))
    # The department that handles the case (承办部门), a registry department code.
    department_code: Mapped[str] = mapped_column(String(CODE_WIDTH))
    # The acceptance point (受理窗口); the registering principal's name when none is given.
    window: Mapped[str] = mapped_column(String(NAME_WIDTH))
    channel: Mapped[str] = mapped_column(String(16))
    principal: Mapped[str] = mapped_column(String(NAME_WIDTH))
    registered_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    # "YYYY-MM" of registered_at in China Standard Time: monthly figures group on a plain
    # column, the same way on SQLite and PostgreSQL.
    registered_month: Mapped[str] = mapped_column(String(7))
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Set at close: at least one material was satisfied by an e-certificate.
    used_e_certificate: Mapped[bool | None] = mapped_column(Boolean, nullable=True)


class CaseMaterial(Base):
    """How each required material of a closed case was satisfied."""

    __tablename__ = "case_materials"

    case_number: Mapped[str] = mapped_column(String(CODE_WIDTH * 2), primary_key=True)
    material_code: Mapped[str] = mapped_column(String(CODE_WIDTH), primary_key=True)
    # E_CERTIFICATE, PAPER or NOT_PROVIDED (certhub.hub.services.cases.MaterialSource).
    source: Mapped[str] = mapped_column(String(16))
    # The e-certificate that satisfied it, when the window names one.
    certificate_id: Mapped[str | None] = mapped_column(String(ID_WIDTH), nullable=True)


class CosignedCheckpoint(Base):
    """Checkpoints published with the witness cosignatures the policy required: the note is
    the log's signed checkpoint followed by the witnesses' cosignature lines."""

    __tablename__ = "cosigned_checkpoints"

    size: Mapped[int] = mapped_column(BIGINT, primary_key=True, autoincrement=False)
    note: Mapped[str] = mapped_column(Text)
    cosigners: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class Presentation(Base):
    """A presentation token (亮证) an applicant's app created for one certificate: the token
    carries only its id and expiry, signed by the hub; what it shows is here. Redeemed at
    most once: the redeeming UPDATE matches only an unredeemed row
    (``certhub.hub.services.presentation``)."""

    __tablename__ = "presentations"

    token_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder_commitment: Mapped[str] = mapped_column(String(64))
    certificate_id: Mapped[str] = mapped_column(String(ID_WIDTH))
    # Optional binding: only a window handling this service item may redeem it.
    service_item_code: Mapped[str | None] = mapped_column(String(CODE_WIDTH), nullable=True)
    # Optional purpose (用证事由) the applicant gave, shown to the window.
    purpose: Mapped[str | None] = mapped_column(String(NAME_WIDTH), nullable=True)
    created_by: Mapped[str] = mapped_column(String(NAME_WIDTH))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    redeemed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    redeemed_by: Mapped[str | None] = mapped_column(String(NAME_WIDTH), nullable=True)
    redeemed_case: Mapped[str | None] = mapped_column(String(CODE_WIDTH * 2), nullable=True)


class ConsentRequest(Base):
    """A window's request to share an applicant's certificates for one case of an item that
    needs consent: PENDING until the applicant decides (APPROVED / DECLINED), USED once the
    window received the certificates; ``round`` counts the requests of one (holder, window,
    item, case), so a new request follows a used one."""

    __tablename__ = "consent_requests"
    __table_args__ = (
        UniqueConstraint(
            "holder_commitment",
            "principal",
            "service_item_code",
            "case_number",
            "round",
            name="uq_consent_requests_purpose_round",
        ),
        Index("ix_consent_requests_holder", "holder_commitment", "status"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder_commitment: Mapped[str] = mapped_column(String(64))
    principal: Mapped[str] = mapped_column(String(NAME_WIDTH))
    service_item_code: Mapped[str] = mapped_column(String(CODE_WIDTH))
    case_number: Mapped[str] = mapped_column(String(CODE_WIDTH * 2))
    round: Mapped[int] = mapped_column(Integer)
    # JSON list of the certificate type codes the window would receive.
    type_codes: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    decided_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class CredentialStatus(Base):
    """The Bitstring Status List entry of an exported credential: one per certificate
    version, at a random index of a list (herd privacy, W3C Bitstring Status List §6)."""

    __tablename__ = "credential_status"
    __table_args__ = (
        UniqueConstraint("certificate_id", "version", name="uq_credential_status_certificate"),
        UniqueConstraint("list_number", "list_index", name="uq_credential_status_slot"),
    )

    id: Mapped[int] = mapped_column(BIGINT, primary_key=True)
    certificate_id: Mapped[str] = mapped_column(String(ID_WIDTH))
    version: Mapped[int] = mapped_column(Integer)
    lineage: Mapped[str] = mapped_column(String(ID_WIDTH))
    list_number: Mapped[int] = mapped_column(Integer)
    list_index: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
