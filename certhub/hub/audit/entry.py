"""Audit entries and their canonical leaf bytes.

The leaf bytes are what the Merkle tree hashes and what monitors download, so their encoding
is fixed here once: JSON with sorted keys, no whitespace, UTF-8, times in UTC with
microseconds. The raw holder ID never appears: only its HMAC commitment.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from enum import StrEnum

from certhub.hub.audit.redact import redact, redact_certificate_id
from certhub.hub.store.models import CODE_WIDTH, ID_WIDTH, NAME_WIDTH

# Version of the leaf format, inside every leaf so that a future format is distinguishable.
LEAF_FORMAT = 1


class Action(StrEnum):
    PUSH = "push"
    REVOKE = "revoke"
    FETCH = "fetch"
    GET = "get"
    VERIFY = "verify"
    AUDIT_QUERY = "audit_query"
    REGISTER_CASE = "register_case"
    CLOSE_CASE = "close_case"
    # A page or query of the web console (certhub.hub.web), by an operator or auditor.
    CONSOLE = "console"
    # CitizenService (a citizen app acting for its applicant) and the window's redemption of
    # an applicant's presentation token (certhub.hub.citizen).
    LIST_ACCESSES = "list_accesses"
    CREATE_PRESENTATION = "create_presentation"
    REDEEM_PRESENTATION = "redeem_presentation"
    LIST_CONSENT_REQUESTS = "list_consent_requests"
    DECIDE_CONSENT = "decide_consent"
    EXPORT_CREDENTIAL = "export_credential"
    # A registry change the log must keep: a compromised key trusted again, forced by an
    # operator (`certhub registry apply --trust-again KEY_ID`, certhub.hub.services.registry_store).
    REGISTRY = "registry"
    # A refused call that has no action of its own (no or unknown principal, over its rate
    # limit, a DirectoryService lookup of something the registry does not hold); ``method``
    # names the RPC.
    REFUSED = "refused"


# Outcome of a call that succeeded; refusals record the status code name instead.
OK = "ok"
# Actions whose successful entries name certificates the hub stored (or, for VERIFY, one a
# department validly signed).
_STORED_ID_ACTIONS = frozenset(
    {
        Action.PUSH,
        Action.REVOKE,
        Action.FETCH,
        Action.GET,
        Action.VERIFY,
        Action.CREATE_PRESENTATION,
        Action.REDEEM_PRESENTATION,
        Action.EXPORT_CREDENTIAL,
    }
)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """What one call did, before it has a place in the log."""

    time: dt.datetime
    principal: str
    action: Action
    outcome: str
    holder_commitment: str | None = None
    certificate_ids: tuple[str, ...] = field(default=())
    service_item_code: str | None = None
    case_number: str | None = None
    # The RPC method, for entries whose action alone does not say (refusals).
    method: str | None = None
    # SHA-256 (hex) of the envelopes an ok push or revoke stored, in ``certificate_ids``
    # order: binds the entry to the certificates/revocations row it admitted, so a changed
    # row no longer matches its entry (``certhub audit verify``). In the leaf as ``sha256``,
    # only when set: every other leaf is byte for byte what it was.
    envelope_sha256: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        # A refusal records what the caller asked before it was validated, so hostile text
        # reaches here; it must fit its column, or it fails the whole group commit it shares.
        # Free text never carries a raw ID into the log (certhub.hub.audit.redact, docs/trust.md).
        for name, width in _COLUMN_WIDTHS:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, auditable(redact(value), width))
        if self.method is not None:
            object.__setattr__(self, "method", redact(self.method))
        # Ids of certificates the hub stored (what a successful call pushed or served) are
        # kept; ids a caller only asked for, or named in a query, follow the rule.
        stored = self.outcome == OK and self.action in _STORED_ID_ACTIONS
        ids = tuple(
            auditable(c if stored else redact_certificate_id(c), ID_WIDTH)
            for c in self.certificate_ids
        )
        object.__setattr__(self, "certificate_ids", ids)

    def leaf(self) -> bytes:
        """The canonical JSON bytes hashed into the tree."""
        body: dict[str, object] = {
            "v": LEAF_FORMAT,
            "time": format_time(self.time),
            "principal": self.principal,
            "action": str(self.action),
            "outcome": self.outcome,
            "holder": self.holder_commitment,
            "certificate_ids": list(self.certificate_ids),
            "service_item": self.service_item_code,
            "case": self.case_number,
            "method": self.method,
        }
        if self.envelope_sha256:
            body["sha256"] = list(self.envelope_sha256)
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# Text fields of an entry that are also index columns (certhub.hub.store.models), with their widths.
_COLUMN_WIDTHS = (
    ("principal", NAME_WIDTH),
    ("service_item_code", CODE_WIDTH),
    ("case_number", CODE_WIDTH * 2),
)


def auditable(text: str, width: int) -> str:
    """``text`` as an audit column can hold it: no NUL (PostgreSQL text cannot store it) and
    at most ``width`` characters (longer values are cut and marked with an ellipsis)."""
    text = text.replace("\x00", "\ufffd")
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def format_time(t: dt.datetime) -> str:
    """RFC 3339 UTC with microseconds, e.g. 2026-11-28T02:20:54.123456Z."""
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_leaf(leaf: bytes) -> dict[str, object]:
    value = json.loads(leaf)
    if not isinstance(value, dict):
        raise ValueError("audit leaf is not a JSON object")
    return value


def holder_commitment(audit_key: bytes, holder_key: str) -> str:
    """HMAC-SHA256(audit key, "id_type:id") in hex (``holder_key`` is ``Holder.key()``): lets
    auditors query by holder without the log ever containing the ID."""
    return hmac.new(audit_key, holder_key.encode(), hashlib.sha256).hexdigest()
