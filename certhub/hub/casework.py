"""Use cases of cases, period statistics and console views, over a ``Hub``.

Kept beside ``certhub.hub.app`` rather than inside it: the same order as every hub call (check ->
group commit with its audit entry -> answer), through the hub's committer, clock and
registry. Coroutines, like the hub's use cases: a call waits for its group commit on its
own event loop. Servicers and the web console call these and nothing else.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from typing import NoReturn

from certhub.hub.app import Hub
from certhub.hub.audit.entry import OK, Action, AuditRecord
from certhub.hub.errors import HubError, PermissionDenied
from certhub.hub.registry import Principal, Role
from certhub.hub.services import cases, stats
from certhub.hub.services.ingest import require_role

# Who may open the console: the people who keep and check the hub (DESIGN.md, users).
CONSOLE_ROLES = frozenset({Role.OPERATOR, Role.AUDITOR})


@dataclass(frozen=True, slots=True)
class RegisterCaseOutput:
    registered: cases.Registered
    audit_index: int


@dataclass(frozen=True, slots=True)
class CloseCaseOutput:
    closed: cases.Closed
    audit_index: int


class Casework:
    """Registering and closing cases, the KPIs of a period, and audited console views."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def register_case(
        self, caller: Principal, request: cases.RegisterInput
    ) -> RegisterCaseOutput:
        now = self.hub.clock()

        def record(outcome: str) -> AuditRecord:
            return AuditRecord(
                time=now,
                principal=caller.name,
                action=Action.REGISTER_CASE,
                outcome=outcome,
                service_item_code=request.service_item_code,
                case_number=request.case_number,
            )

        try:
            registration = cases.check_register(self.hub.registry(), caller, request)
        except HubError as error:
            await self._refuse(record(error.status_name), error)
        committed = await self.hub.committer.submit(
            lambda s: cases.register_case(s, registration, now=now),
            lambda _value, error: record(error.status_name if error else OK),
        ).wait()
        return RegisterCaseOutput(committed.value, committed.audit_index)

    async def close_case(self, caller: Principal, request: cases.CloseInput) -> CloseCaseOutput:
        now = self.hub.clock()
        registry = self.hub.registry()

        def describe(closed: cases.Closed | None, error: HubError | None) -> AuditRecord:
            return AuditRecord(
                time=now,
                principal=caller.name,
                action=Action.CLOSE_CASE,
                outcome=error.status_name if error else OK,
                service_item_code=closed.service_item_code if closed else None,
                case_number=request.case_number,
            )

        try:
            require_role(caller, Role.INTAKE, "closing cases")
            cases.check_close(request)
        except HubError as error:
            await self._refuse(describe(None, error), error)
        committed = await self.hub.committer.submit(
            lambda s: cases.close_case(s, registry, caller, request, now=now), describe
        ).wait()
        return CloseCaseOutput(committed.value, committed.audit_index)

    async def period_stats(self, query: stats.StatsQuery) -> stats.PeriodStats:
        """A read with a synchronous session: in the loop's thread pool."""
        return await asyncio.to_thread(self.period_stats_now, query)

    def period_stats_now(self, query: stats.StatsQuery) -> stats.PeriodStats:
        return self.hub.period_stats_now(query)

    async def console_view(
        self,
        caller: Principal,
        what: str,
        *,
        holder: str | None = None,
        case_number: str | None = None,
        roles: frozenset[Role] = CONSOLE_ROLES,
        outcome: str = OK,
    ) -> int:
        """Audit one console page or query before it is answered, and return its index. A
        caller whose role may not see it is refused (audited) with PERMISSION_DENIED.
        ``what`` is the page and its query (``/audit?principal=...``), ``holder`` a
        commitment, never an ID."""
        entry = AuditRecord(
            time=self.hub.clock(),
            principal=caller.name,
            action=Action.CONSOLE,
            outcome=outcome,
            holder_commitment=holder,
            case_number=case_number,
            method=what,
        )
        if caller.role not in roles:
            error = PermissionDenied(
                f"principal {caller.name!r} has role {caller.role}; this page needs "
                f"{' or '.join(sorted(roles))}",
                reason="WRONG_ROLE",
            )
            await self._refuse(dataclasses.replace(entry, outcome=error.status_name), error)
        return (await self.hub.committer.submit_entry(entry).wait()).audit_index

    async def console_refuse(
        self,
        caller: Principal,
        what: str,
        error: HubError,
        *,
        holder: str | None = None,
        roles: frozenset[Role] = CONSOLE_ROLES,
    ) -> NoReturn:
        """Audit a console query refused for its input (after the role check), then raise.
        Within the caller's refusal budget, like every refusal (certhub.hub.audit.budget)."""
        if caller.role not in roles:
            await self.console_view(caller, what, holder=holder, roles=roles)  # refuses
        entry = AuditRecord(
            time=self.hub.clock(),
            principal=caller.name,
            action=Action.CONSOLE,
            outcome=error.status_name,
            holder_commitment=holder,
            method=what,
        )
        raise await self.hub.audit_refusal(entry, error)

    async def _refuse(self, entry: AuditRecord, error: HubError) -> NoReturn:
        raise await self.hub.audit_refusal(entry, error)
