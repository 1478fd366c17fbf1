"""The applicant's use cases, through the government app that authenticated them.

A ``CITIZEN_APP`` principal acts for one applicant per call, named in the request: the hub
computes the applicant's holder commitment and never answers about another holder. Kept
beside ``hub.app`` (like ``hub.casework``): the same order as every hub call (check ->
group commit with its audit entry -> answer), through the hub's committer, clock and
registry. Every call appends one entry carrying the commitment, never the raw ID.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from hub.app import Hub
from hub.audit.entry import OK, Action, AuditRecord
from hub.domain.holder import Holder, check_holder
from hub.errors import HubError
from hub.registry import Principal, Role
from hub.services import audit
from hub.services.ingest import require_role
from hub.store.engine import session_scope


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


@dataclass(frozen=True, slots=True)
class AccessesOutput:
    page: audit.Page
    audit_index: int


class CitizenDesk:
    """ListMyAccesses (and, as they land, consent, presentation and export)."""

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
            page_size = audit.page_size_of(request.page_size)
            before = audit.decode_page_token(request.page_token)
        except HubError as error:
            await self._refuse(record(error.status_name, holder=commitment), error)
        where = audit.QueryFilter(holder_commitment=commitment)

        def read() -> audit.Page:
            with session_scope(self.hub.sessions) as session:
                return audit.query(session, where, page_size=page_size, before=before)

        # Read first, then audit: the call is not part of its own answer.
        page = await asyncio.to_thread(read)
        entry = record(OK, holder=commitment)
        index = (await self.hub.committer.submit_entry(entry).wait()).audit_index
        return AccessesOutput(page, index)

    # --- internals ----------------------------------------------------------------------

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
        error.audit_index = (await self.hub.committer.submit_entry(entry).wait()).audit_index
        raise error
