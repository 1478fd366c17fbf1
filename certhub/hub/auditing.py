"""The AuditService use cases: who may ask what, and what each call leaves in the log.

Access (also documented in proto/certhub/v1/audit.proto):

- ``QueryAudit`` and ``GetEntries`` read who accessed whose certificates: AUDITOR only.
- ``GetCheckpoint`` and ``GetConsistencyProof`` reveal only the signed tree head and hashes
  of perfect subtrees. Transparency logs publish exactly these to everyone (CT, Rekor,
  sumdb); any authenticated principal may ask, so an intake system can check a checkpoint
  and that the log only ever grew.
- ``GetInclusionProof`` also returns the leaf, so an AUDITOR may ask for any index and any
  other principal only for entries it caused itself (the leaf's principal is the caller):
  an intake system proves its own fetch was logged without reading others' entries. The
  sibling hashes reveal nothing: leaf hashes cover microsecond times and HMAC commitments.

Every refusal is audited (action ``audit_query``, outcome the status, the RPC as method)
before it is answered. ``QueryAudit`` appends one ``audit_query`` entry carrying the holder
commitment and certificate id it filtered by. The proof, checkpoint and entries reads are
not logged: monitors poll them continuously, and logging each poll would grow the log (and
its checkpoints) from monitoring alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn, TypeVar

from sqlalchemy.orm import Session

from certhub.hub.app import Hub
from certhub.hub.audit import reads
from certhub.hub.audit.entry import OK, Action, AuditRecord
from certhub.hub.errors import HubError, NotFound, PermissionDenied
from certhub.hub.registry import Principal, Role
from certhub.hub.services import intake
from certhub.hub.services.ingest import require_role
from certhub.hub.store.engine import session_scope
from certhub.signing import merkle
from certhub.signing.note import Checkpoint

T = TypeVar("T")

_SERVICE = "/certhub.v1.AuditService/"


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryInput:
    """QueryAudit as the edge received it; empty strings mean "no filter"."""

    id_type: str = ""
    holder_id: str = ""
    principal: str = ""
    action: str = ""
    certificate_id: str = ""
    since: str = ""
    until: str = ""
    page_size: int = 0
    page_token: str = ""


@dataclass(frozen=True, slots=True)
class QueryOutput:
    page: reads.Page
    audit_index: int


@dataclass(frozen=True, slots=True)
class CheckpointOutput:
    checkpoint: reads.StoredCheckpoint
    origin: str
    verifier_key: str


class AuditApi:
    """AuditService over one Hub (its sessions, registry, group commit and keys)."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    def query(self, caller: Principal, request: QueryInput) -> QueryOutput:
        method = _SERVICE + "QueryAudit"
        commitment: str | None = None
        cid: str | None = None
        try:
            self._require_auditor(caller, "querying the audit log")
            cid = reads.check_filter_text(request.certificate_id, field="certificate_id")
            if request.id_type or request.holder_id:
                holder = intake.checked_holder(
                    self._hub.registry(), request.id_type, request.holder_id
                )
                commitment = self._hub.commitment(holder.key())
            where = reads.QueryFilter(
                holder_commitment=commitment,
                principal=reads.check_filter_text(request.principal, field="principal"),
                action=reads.check_filter_text(request.action, field="action"),
                certificate_id=cid,
                since=reads.parse_time(request.since, field="since"),
                until=reads.parse_time(request.until, field="until"),
            )
            size = reads.page_size_of(request.page_size)
            before = reads.decode_page_token(request.page_token)
            with session_scope(self._hub.sessions) as session:
                page = reads.query(session, where, page_size=size, before=before)
        except HubError as error:
            self._refuse(caller, method, error, holder=commitment, certificate_id=cid)
        entry = self._record(caller, OK, method, holder=commitment, certificate_id=cid)
        index = self._hub.committer.submit_entry(entry).result().audit_index
        return QueryOutput(page=page, audit_index=index)

    def checkpoint(self, caller: Principal, *, cosigned: bool = False) -> CheckpointOutput:
        keys = self._hub.audit_log.keys
        if cosigned:
            found = self._read(caller, "GetCheckpoint", reads.latest_cosigned_checkpoint)
            if found is None:
                self._refuse(
                    caller,
                    _SERVICE + "GetCheckpoint",
                    NotFound(
                        "no checkpoint has been cosigned by a quorum of witnesses yet (none "
                        "configured, or the first round is still under way)",
                        reason="NO_COSIGNED_CHECKPOINT",
                    ),
                )
            return CheckpointOutput(
                checkpoint=found, origin=keys.origin, verifier_key=keys.signer.vkey
            )
        stored = self._read(caller, "GetCheckpoint", reads.latest_checkpoint)
        if stored is None:
            # An empty log still has a signed head (size 0, the empty root): monitors and
            # clients start from it like from any other, and nothing is refused.
            empty = Checkpoint(origin=keys.origin, size=0, root_hash=merkle.EMPTY_ROOT)
            stored = reads.StoredCheckpoint(
                size=0, root=empty.root_hash, note=self._hub.audit_log.sign(empty).note
            )
        return CheckpointOutput(
            checkpoint=stored, origin=keys.origin, verifier_key=keys.signer.vkey
        )

    def inclusion_proof(
        self, caller: Principal, leaf_index: int, tree_size: int
    ) -> reads.InclusionProof:
        proof = self._read(
            caller,
            "GetInclusionProof",
            lambda s: reads.inclusion_proof(s, leaf_index, tree_size),
        )
        if caller.role is not Role.AUDITOR and reads.entry_principal(proof.leaf) != caller.name:
            self._refuse(
                caller,
                _SERVICE + "GetInclusionProof",
                PermissionDenied(
                    f"principal {caller.name!r} may prove only its own audit entries; "
                    f"entry {leaf_index} is another principal's (role {Role.AUDITOR} may "
                    "prove any)",
                    reason="NOT_OWN_ENTRY",
                ),
            )
        return proof

    def consistency_proof(
        self, caller: Principal, first_size: int, second_size: int
    ) -> reads.ConsistencyProof:
        return self._read(
            caller,
            "GetConsistencyProof",
            lambda s: reads.consistency_proof(s, first_size, second_size),
        )

    def entries(self, caller: Principal, start: int, end: int) -> tuple[int, list[bytes]]:
        method = _SERVICE + "GetEntries"
        try:
            self._require_auditor(caller, "reading raw audit entries")
        except HubError as error:
            self._refuse(caller, method, error)
        return self._read(caller, "GetEntries", lambda s: reads.entries(s, start, end))

    # --- internals ----------------------------------------------------------------------

    def _read(self, caller: Principal, name: str, read: Callable[[Session], T]) -> T:
        try:
            with session_scope(self._hub.sessions) as session:
                return read(session)
        except HubError as error:
            # Bad sizes and indices are refusals too: the log records them like any other.
            self._refuse(caller, _SERVICE + name, error)

    @staticmethod
    def _require_auditor(caller: Principal, what: str) -> None:
        require_role(caller, Role.AUDITOR, what)

    def _record(
        self,
        caller: Principal,
        outcome: str,
        method: str,
        *,
        holder: str | None = None,
        certificate_id: str | None = None,
    ) -> AuditRecord:
        return AuditRecord(
            time=self._hub.clock(),
            principal=caller.name,
            action=Action.AUDIT_QUERY,
            outcome=outcome,
            holder_commitment=holder,
            certificate_ids=(certificate_id,) if certificate_id else (),
            method=method,
        )

    def _refuse(
        self,
        caller: Principal,
        method: str,
        error: HubError,
        *,
        holder: str | None = None,
        certificate_id: str | None = None,
    ) -> NoReturn:
        entry = self._record(
            caller, error.status_name, method, holder=holder, certificate_id=certificate_id
        )
        # Run in a worker thread (the servicer's to_thread): block on the commit.
        raise self._hub.refuse(entry, error).result()
