"""The hub's use cases: each call is checked, applied, audited and answered in that order.

``Hub`` wires the domain services to their dependencies (sessions, the registry, the audit
group commit, the cache, the clock). The gRPC servicers call these methods and nothing else;
tests can call them directly with a real database.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn, Protocol, TypeVar, runtime_checkable

from sqlalchemy.orm import Session, sessionmaker

from certhub.cache import RateLimit, RateLimiter
from certhub.hub.audit import budget
from certhub.hub.audit.committer import GroupCommitter
from certhub.hub.audit.entry import OK, Action, AuditRecord, holder_commitment
from certhub.hub.audit.log import AuditLog, AuditLogKeys
from certhub.hub.audit.refusals import AuditedRefusal, submit_refusal
from certhub.hub.domain.status import CST
from certhub.hub.errors import (
    HubError,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
)
from certhub.hub.registry import CertificateType, Department, Principal, Registry, Role, ServiceItem
from certhub.hub.services import consent, directory, freshness, ingest, intake, stats
from certhub.hub.services.registry_store import RegistrySource
from certhub.hub.store.aio import AsyncReader
from certhub.hub.store.engine import read_scope, session_scope
from certhub.signing import Algorithm, PrivateKey

log = logging.getLogger("certhub.hub")

T = TypeVar("T")

# The outcome of a fetch's audit entry whose cached view turned out superseded in its group
# commit: nothing was answered from it; the fetch's retry from the database has its own entry.
STALE_VIEW = "stale-view-retried"

# The method of a refused DirectoryService lookup's entry: the RPC, as the edge's refusals
# (authentication, rate limit) write it.
_DIRECTORY_SERVICE = "/certhub.v1.DirectoryService/"


class HolderCache(Protocol):
    """The seam to the holder cache (``certhub.hub.caching.HolderScopes`` over
    ``cache.GenerationalCache``): read-through with generation invalidation, on the serving
    event loop. How a view is kept (its bytes) is the cache's business, not the use case's."""

    async def read_through(
        self, scope: str, load: Callable[[], Awaitable[intake.HolderView]]
    ) -> tuple[intake.HolderView, bool]:
        """The view, and whether it came from the cache rather than from ``load`` (then
        the fetch's group commit must check that it is still current)."""
        ...

    async def invalidate(self, scopes: Sequence[str]) -> bool: ...


class NoCache:
    """Every read goes to the database (``--no-cache``, and tests of the uncached path)."""

    async def read_through(
        self, scope: str, load: Callable[[], Awaitable[intake.HolderView]]
    ) -> tuple[intake.HolderView, bool]:
        del scope
        return await load(), False

    async def invalidate(self, scopes: Sequence[str]) -> bool:
        del scopes
        return True


@runtime_checkable
class _Closeable(Protocol):
    def close(self) -> None: ...


@runtime_checkable
class _AsyncCloseable(Protocol):
    async def close_async(self) -> None: ...


@dataclass(frozen=True, slots=True)
class PushOutput:
    client_ref: str
    certificate_id: str
    version: int
    outcome: ingest.PushOutcome
    audit_index: int


@dataclass(frozen=True, slots=True)
class RevokeOutput:
    client_ref: str
    certificate_id: str
    newly_revoked: bool
    audit_index: int


@dataclass(frozen=True, slots=True)
class FetchOutput:
    result: intake.FetchResult
    audit_index: int


@dataclass(frozen=True, slots=True)
class GetOutput:
    served: intake.Served
    audit_index: int


@dataclass(frozen=True, slots=True)
class VerifyOutput:
    result: intake.VerifyResult
    audit_index: int


class Hub:
    """One hub process's use cases over shared state (database, cache).

    The use cases are coroutines run by the process's serving event loop: they never block
    it. They wait on the cache (async Redis), on the group commit (a future resolved by the
    committer thread once per batch) and on database reads. The hot read, a holder's view
    on a cache miss, runs on the loop itself through ``reader`` (PostgreSQL's async driver,
    ``certhub.hub.store.aio``); the other reads, and every read on SQLite, run in the loop's
    default thread pool (``asyncio.to_thread``) because the services take a synchronous
    session.
    """

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        registry: RegistrySource,
        audit_keys: AuditLogKeys,
        cache: HolderCache | None = None,
        rate_limiter: RateLimiter | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        attestation_key: PrivateKey | None = None,
        reader: AsyncReader | None = None,
    ) -> None:
        self.sessions = sessions
        # None: holder views are read in the thread pool (SQLite, or a Hub built by hand).
        self.reader = reader
        self.registry_source = registry
        self.audit_log = AuditLog(audit_keys)
        self.committer = GroupCommitter(sessions=sessions, audit_log=self.audit_log)
        self.cache: HolderCache = cache or NoCache()
        # None = no rate limits (principals' registry limits are not enforced).
        self.rate_limiter = rate_limiter
        self.clock = clock
        self._hmac_key = audit_keys.hmac_key
        # How many refusals per principal get their own audit entry (certhub.hub.audit.budget).
        self.refusals = budget.RefusalBudget()
        # Signs presentation tokens and exported credentials (certhub.hub.citizen). Every process of
        # a deployment must share it (build_hub loads it from the data directory); a
        # process-local key only suits tests that build a Hub by hand.
        self.attestation_key = attestation_key or PrivateKey.generate(Algorithm.ED25519)
        self._cases = _RecordedCases()

    def close(self) -> None:
        self.committer.close()
        for resource in (self.cache, self.rate_limiter):
            if isinstance(resource, _Closeable):
                resource.close()

    async def close_async(self) -> None:
        """Close what belongs to the serving loop (its Redis connections), on that loop."""
        for resource in (self.cache, self.rate_limiter, self.reader):
            if isinstance(resource, _AsyncCloseable):
                await resource.close_async()

    # --- callers ------------------------------------------------------------------------

    def registry(self) -> Registry:
        return self.registry_source.current()

    async def authenticate(
        self, name: str | None, *, method: str, problem: str | None = None
    ) -> Principal:
        """The registry principal for a client certificate's CN; refusals are audited.
        ``problem``: the edge found the certificate's identity ambiguous (two CNs, a SAN
        naming another principal): refused whatever ``name`` is."""
        principal = None if problem else self.registry().principals.get(name or "")
        if principal is not None:
            return principal
        if problem:
            error = Unauthenticated(problem, reason="AMBIGUOUS_CLIENT_CERTIFICATE")
        else:
            error = Unauthenticated(
                f"client certificate names no registered principal ({name!r})"
                if name
                else "no client certificate",
                reason="UNKNOWN_PRINCIPAL",
            )
        raise await self._audited(
            AuditRecord(
                time=self.clock(),
                principal=name or "",
                action=Action.REFUSED,
                outcome=error.status_name,
                method=method,
            ),
            error,
        )

    async def admit(self, caller: Principal, *, method: str) -> None:
        """Take one token of the caller's registry rate limit; a refusal is audited and
        raised as RESOURCE_EXHAUSTED with the time until the next token."""
        spec = caller.rate_limit
        if spec is None or self.rate_limiter is None:
            return
        limit = RateLimit(rate_per_second=spec.per_second, burst=spec.burst)
        decision = await self.rate_limiter.acquire_async(caller.name, limit)
        if decision.allowed:
            return
        error = ResourceExhausted(
            f"principal {caller.name!r} is over its rate limit of {spec.per_second:g} calls/s "
            f"(burst {spec.burst}); retry in {decision.retry_after:.3f} s",
            reason="RATE_LIMITED",
            retry_after=decision.retry_after,
        )
        raise await self._audited(
            AuditRecord(
                time=self.clock(),
                principal=caller.name,
                action=Action.REFUSED,
                outcome=error.status_name,
                method=method,
            ),
            error,
        )

    def today(self) -> dt.date:
        return self.clock().astimezone(CST).date()

    def commitment(self, holder_key: str) -> str:
        return holder_commitment(self._hmac_key, holder_key)

    # --- ingest -------------------------------------------------------------------------

    def submit_push(
        self, caller: Principal, request: ingest.PushInput
    ) -> Callable[[], Awaitable[PushOutput]]:
        """Check now, store in the next group commit; the returned coroutine function waits
        for it. Lets a stream keep many pushes in flight. Call it on the serving loop."""
        now = self.clock()
        record = _recorder(now, caller, Action.PUSH)
        try:
            checked = ingest.check_push(self.registry(), caller, request)
        except HubError as error:
            return self._refuse_later(record(error.status_name), error)
        p = checked.payload
        commitment = self.commitment(p.holder.key())

        def describe(stored: ingest.Stored | None, error: HubError | None) -> AuditRecord:
            return record(
                error.status_name if error else OK,
                holder=commitment,
                certificate_ids=(p.certificate_id,),
                envelope_sha256=() if error else (checked.envelope_sha256,),
            )

        pending = self.committer.submit(
            lambda s: ingest.store_push(s, checked, now=now),
            describe,
            batch=ingest.PUSH_BATCH,
            item=(checked, now),
        )

        async def finish() -> PushOutput:
            committed = await pending.wait()
            stored = committed.value
            # DUPLICATE invalidates too: the first attempt may have committed and then lost
            # its invalidation to a crash, and the adapter's retry is what heals the cache.
            await self.cache.invalidate([commitment])
            return PushOutput(
                client_ref=request.client_ref,
                certificate_id=stored.certificate_id,
                version=stored.version,
                outcome=stored.outcome,
                audit_index=committed.audit_index,
            )

        return finish

    async def push(self, caller: Principal, request: ingest.PushInput) -> PushOutput:
        return await self.submit_push(caller, request)()

    async def revoke(self, caller: Principal, request: ingest.RevokeInput) -> RevokeOutput:
        now = self.clock()
        record = _recorder(now, caller, Action.REVOKE)
        try:
            checked = ingest.check_revoke(caller, request)
        except HubError as error:
            raise await self._audited(record(error.status_name), error) from None
        registry = self.registry()
        cid = (checked.payload.certificate_id,)

        digest = (hashlib.sha256(request.envelope).hexdigest(),)

        def describe(revoked: ingest.Revoked | None, error: HubError | None) -> AuditRecord:
            return record(
                error.status_name if error else OK,
                holder=self.commitment(revoked.holder_key) if revoked else None,
                certificate_ids=cid,
                envelope_sha256=() if error else digest,
            )

        committed = await self.committer.submit(
            lambda s: ingest.store_revoke(s, registry, caller, checked, now=now), describe
        ).wait()
        revoked = committed.value
        # Invalidate before answering, even for a repeat: a previous attempt may have
        # committed and then lost its invalidation with a crash.
        await self.cache.invalidate([self.commitment(revoked.holder_key)])
        return RevokeOutput(
            request.client_ref, revoked.certificate_id, revoked.newly_revoked, committed.audit_index
        )

    # --- intake -------------------------------------------------------------------------

    async def fetch(self, caller: Principal, request: intake.FetchInput) -> FetchOutput:
        now = self.clock()
        purpose = request.purpose
        record = _recorder(now, caller, Action.FETCH, purpose)
        registry = self.registry()
        try:
            holder, problems = intake.read_holder(
                registry, caller, request.id_type, request.holder_id
            )
            item = intake.check_purpose(registry, caller, purpose, earlier=problems)
            assert holder is not None  # else check_purpose raised its problem
            commitment = self.commitment(holder.key())
        except HubError as error:
            raise await self._audited(record(error.status_name), error) from None
        if item.consent_required:  # the registry decides: no round trip for other items
            # Read from the database, not the cache: what the applicant approved must be
            # what is served, with no stale-view retry that could widen it.
            view = await self._consent_gate(
                caller, item, purpose,
                await self._read_holder_view(holder.key()),
                now=now, record=record, commitment=commitment,
            )  # fmt: skip
            cached = False
        else:
            view, cached = await self.cache.read_through(
                commitment, functools.partial(self._read_holder_view, holder.key())
            )
        answered = await self._answer_fetch(
            request, registry, item, view, now=now, record=record, commitment=commitment,
            cached_view=(holder.key(), view.version) if cached else None,
        )  # fmt: skip
        if answered is None:
            # The cached view was superseded (an invalidation was lost): its entry says so.
            # Read the database and answer from there, audited again.
            log.warning("fetch: cached holder view was stale; answered from the database")
            await self.cache.invalidate([commitment])
            view = await self._read_holder_view(holder.key())
            answered = await self._answer_fetch(
                request, registry, item, view, now=now, record=record, commitment=commitment,
                cached_view=None,
            )  # fmt: skip
            assert answered is not None  # only a cached view can be stale
        served, materials, audit_index = answered
        return FetchOutput(intake.FetchResult(holder, served, materials), audit_index)

    async def _consent_gate(
        self,
        caller: Principal,
        item: ServiceItem,
        purpose: intake.Purpose,
        view: intake.HolderView,
        *,
        now: dt.datetime,
        record: Callable[..., AuditRecord],
        commitment: str,
    ) -> intake.HolderView:
        """For an item that needs the applicant's approval (``certhub.hub.services.consent``): the
        view limited to the approved types, once; otherwise FAILED_PRECONDITION saying why
        (CONSENT_PENDING / _DECLINED / _EXPIRED), its audit entry recording the step."""
        registry = self.registry()
        today = now.astimezone(CST).date()
        chosen, _ = intake.select_for_item(
            item, view.certificates, today=today, distrusted=registry.compromised_key_ids
        )
        types = frozenset(c.type_code for c, _ in chosen)
        if not types:
            return view  # nothing would be shared: nothing to consent to
        asked = consent.Purpose(
            holder_commitment=commitment,
            principal=caller.name,
            service_item_code=item.code,
            case_number=purpose.case_number,
        )
        committed = await self.committer.submit(
            lambda s: consent.gate(s, asked, type_codes=types, now=now),
            lambda gate, error: record(
                str(gate.outcome) if gate else error.status_name if error else OK,
                holder=asked.holder_commitment,
            ),
        ).wait()
        gate = committed.value
        if gate.outcome is consent.GateOutcome.USE:
            allowed = [c for c in view.certificates if c.type_code in gate.type_codes]
            return intake.HolderView(view.version, allowed)
        error = consent.refusal(gate, service_item_code=item.code)
        error.audit_index = committed.audit_index
        raise error

    async def _answer_fetch(
        self,
        request: intake.FetchInput,
        registry: Registry,
        item: ServiceItem,
        view: intake.HolderView,
        *,
        now: dt.datetime,
        record: Callable[..., AuditRecord],
        commitment: str,
        cached_view: tuple[str, int] | None,
    ) -> tuple[tuple[intake.Served, ...], tuple[intake.MaterialResult, ...], int] | None:
        """Select, audit and return what the item needs from ``view``; None if the group
        commit found the cached view superseded."""
        purpose = request.purpose
        chosen, materials = intake.select_for_item(
            item,
            view.certificates,
            today=now.astimezone(CST).date(),
            distrusted=registry.compromised_key_ids,
        )
        any_satisfied = any(m.satisfied for m in materials)
        new_case = not self._cases.recorded(purpose.case_number, served=any_satisfied)
        unit = intake.FetchUnit(
            case=(purpose, any_satisfied, now) if new_case else None, cached_view=cached_view
        )
        ids = tuple(c.certificate_id for c, _ in chosen)

        def describe(value: str | None, _error: HubError | None) -> AuditRecord:
            if value == freshness.STALE:
                return record(STALE_VIEW, holder=commitment)
            return record(OK, holder=commitment, certificate_ids=ids)

        if unit.case is None and unit.cached_view is None:
            pending = self.committer.submit(None, describe)  # audit-only: nothing to check
        else:
            pending = self.committer.submit(
                lambda s: intake.FETCH_BATCH.apply_all(s, [unit])[0],
                describe,
                batch=intake.FETCH_BATCH,
                item=unit,
            )
        committed = await pending.wait()
        if committed.value == freshness.STALE:
            return None
        if new_case:
            self._cases.remember(purpose.case_number, served=any_satisfied)
        attachments = await self._attachments(chosen, request.include_attachments)
        served = tuple(
            intake.Served(c, status, attachments.get(c.attachment_sha256 or ""))
            for c, status in chosen
        )
        return served, materials, committed.audit_index

    async def get(self, caller: Principal, request: intake.GetInput) -> GetOutput:
        now = self.clock()
        purpose = request.purpose
        record = _recorder(now, caller, Action.GET, purpose)
        registry = self.registry()
        commitment: str | None = None
        try:
            holder, problems = intake.read_holder(
                registry, caller, request.id_type, request.holder_id
            )
            commitment = self.commitment(holder.key()) if holder is not None else None
            item = intake.check_purpose(
                registry, caller, purpose, earlier=problems, certificate_id=request.certificate_id
            )
            assert holder is not None  # else check_purpose raised its problem
            found = await asyncio.to_thread(self._load_certificate, request.certificate_id)
            if found is None or found[1] != holder.key():
                # Same answer for "no such id" and "not this holder's": no existence oracle.
                raise NotFound(
                    f"holder has no certificate {request.certificate_id}",
                    reason="CERTIFICATE_NOT_FOUND",
                )
            stored = found[0]
            if stored.type_code not in item.satisfying_types:
                raise PermissionDenied(
                    f"certificate type {stored.type_code} satisfies no material of service item "
                    f"{item.code}",
                    reason="NOT_NEEDED_FOR_ITEM",
                )
        except HubError as error:
            ids = (request.certificate_id,) if request.certificate_id else ()
            raise await self._audited(
                record(error.status_name, holder=commitment, certificate_ids=ids), error
            ) from None
        attachments = await self._attachments([(stored, None)], request.include_attachments)
        status = stored.status(now.astimezone(CST).date(), distrusted=registry.compromised_key_ids)
        entry = record(OK, holder=commitment, certificate_ids=(stored.certificate_id,))
        audit_index = (await self.committer.submit_entry(entry).wait()).audit_index
        return GetOutput(
            intake.Served(stored, status, attachments.get(stored.attachment_sha256 or "")),
            audit_index,
        )

    async def verify(self, caller: Principal, envelope: bytes) -> VerifyOutput:
        now = self.clock()
        record = _recorder(now, caller, Action.VERIFY)
        registry = self.registry()
        today = now.astimezone(CST).date()

        def verify_shown() -> intake.VerifyResult:
            with session_scope(self.sessions) as session:
                return intake.verify_shown(session, registry, envelope, today=today)

        try:
            ingest.require_role(caller, Role.INTAKE, "verifying certificates")
            result = await asyncio.to_thread(verify_shown)
        except HubError as error:
            raise await self._audited(record(error.status_name), error) from None
        p = result.payload
        entry = record(
            OK if result.valid else "invalid",
            holder=self.commitment(p.holder.key()) if p else None,
            certificate_ids=(p.certificate_id,) if p else (),
        )
        committed = await self.committer.submit_entry(entry).wait()
        return VerifyOutput(result, committed.audit_index)

    # --- directory ----------------------------------------------------------------------
    # Lookups any principal may make. Their answers are registry data every window already
    # has, so only refusals are logged: like every refusal (within the caller's budget), as
    # action ``refused`` with the RPC as method and the asked-for code in ``service_item``
    # (redacted by the entry if ID-shaped, certhub.hub.audit.redact).

    async def issuer_departments(self, caller: Principal, department_code: str) -> list[Department]:
        registry = self.registry()
        return await self._looked_up(
            caller,
            "ListIssuerKeys",
            lambda: directory.issuer_departments(registry, department_code),
        )

    async def certificate_types(self, caller: Principal, kind: str) -> list[CertificateType]:
        registry = self.registry()
        return await self._looked_up(
            caller, "ListCertificateTypes", lambda: directory.certificate_types(registry, kind)
        )

    async def service_item(self, caller: Principal, code: str) -> ServiceItem:
        registry = self.registry()
        return await self._looked_up(
            caller,
            "GetServiceItem",
            lambda: directory.service_item(registry, code),
            service_item_code=code,
        )

    async def period_stats(self, caller: Principal, request: stats.StatsInput) -> stats.PeriodStats:
        """The KPIs over a period; a bad period or breakdown is refused and audited. The read
        has a synchronous session: in the loop's thread pool."""
        query = await self._looked_up(
            caller,
            "GetStats",
            lambda: stats.parse_query(request.since, request.until, request.by),
        )
        return await asyncio.to_thread(self.period_stats_now, query)

    def period_stats_now(self, query: stats.StatsQuery) -> stats.PeriodStats:
        with session_scope(self.sessions) as session:
            return stats.compute(session, self.registry(), query, now=self.clock())

    def stats(self) -> directory.Stats:
        with session_scope(self.sessions) as session:
            return directory.compute_stats(session, self.registry())

    async def _looked_up(
        self,
        caller: Principal,
        rpc: str,
        lookup: Callable[[], T],
        *,
        service_item_code: str | None = None,
    ) -> T:
        try:
            return lookup()
        except HubError as error:
            entry = AuditRecord(
                time=self.clock(),
                principal=caller.name,
                action=Action.REFUSED,
                outcome=error.status_name,
                service_item_code=service_item_code,
                method=_DIRECTORY_SERVICE + rpc,
            )
            raise await self._audited(entry, error) from None

    # --- internals ----------------------------------------------------------------------

    async def _read_holder_view(self, holder_key: str) -> intake.HolderView:
        if self.reader is not None:
            return await intake.read_holder_view(self.reader, holder_key)
        return await asyncio.to_thread(self._load_holder_view, holder_key)

    def _load_holder_view(self, holder_key: str) -> intake.HolderView:
        with read_scope(self.sessions) as conn:
            return intake.load_holder_view(conn, holder_key)

    def _load_certificate(self, certificate_id: str) -> tuple[intake.StoredCertificate, str] | None:
        with session_scope(self.sessions) as session:
            return intake.load_certificate(session, certificate_id)

    async def _attachments(
        self, chosen: Sequence[tuple[intake.StoredCertificate, object]], wanted: bool
    ) -> dict[str, bytes]:
        digests = [c.attachment_sha256 for c, _ in chosen if c.attachment_sha256]
        if not wanted or not digests:
            return {}

        def load() -> dict[str, bytes]:
            with session_scope(self.sessions) as session:
                return intake.load_attachments(session, digests)

        return await asyncio.to_thread(load)

    def refuse(self, entry: AuditRecord, error: HubError) -> AuditedRefusal:
        """Queue a refusal's entry within its principal's refusal budget
        (``certhub.hub.audit.refusals``); its ``wait()`` or ``result()`` is the error to raise,
        carrying its audit index. Past the budget that error is RESOURCE_EXHAUSTED
        REFUSALS_RATE_LIMITED and the entry is a summary, or none."""
        return submit_refusal(self.committer, self.refusals, entry, error)

    async def audit_refusal(self, entry: AuditRecord, error: HubError) -> HubError:
        """``refuse`` and wait: the error to raise."""
        return await self.refuse(entry, error).wait()

    async def _audited(self, entry: AuditRecord, error: HubError) -> HubError:
        return await self.audit_refusal(entry, error)

    def _refuse_later(
        self, entry: AuditRecord, error: HubError
    ) -> Callable[[], Awaitable[NoReturn]]:
        refusal = self.refuse(entry, error)

        async def finish() -> NoReturn:
            raise await refusal.wait()

        return finish


# Cases whose KPI row this process has written. A window fetches several times for one
# case (one per material, retries); only the first write can change the row, so the others
# skip their unit of work in the group commit (a savepoint and an upsert: three round trips
# in the single commit thread, which bounded fetch throughput). 100,000 cases are months of
# a district's cases in 15-17 MB per process (tracemalloc, case numbers of 14 to 29
# characters; longer ones cost more); an evicted case only costs one redundant, harmless
# upsert.
RECORDED_CASES_MAX = 100_000


class _RecordedCases:
    """Case numbers already recorded by this process, with the ``served`` flag written."""

    def __init__(self, *, limit: int = RECORDED_CASES_MAX) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._served: OrderedDict[str, bool] = OrderedDict()

    def recorded(self, case_number: str, *, served: bool) -> bool:
        """True if recording (case, served) again would change nothing: served only ever
        goes from False to True."""
        with self._lock:
            before = self._served.get(case_number)
        return before is not None and (before or not served)

    def remember(self, case_number: str, *, served: bool) -> None:
        with self._lock:
            self._served[case_number] = served or self._served.get(case_number, False)
            self._served.move_to_end(case_number)
            while len(self._served) > self._limit:
                self._served.popitem(last=False)


def _recorder(
    now: dt.datetime, caller: Principal, action: Action, purpose: intake.Purpose | None = None
) -> Callable[..., AuditRecord]:
    def record(
        outcome: str,
        *,
        holder: str | None = None,
        certificate_ids: Sequence[str] = (),
        envelope_sha256: Sequence[str] = (),
    ) -> AuditRecord:
        return AuditRecord(
            time=now,
            principal=caller.name,
            action=action,
            outcome=outcome,
            holder_commitment=holder,
            certificate_ids=tuple(certificate_ids),
            service_item_code=purpose.service_item_code if purpose else None,
            case_number=purpose.case_number if purpose else None,
            envelope_sha256=tuple(envelope_sha256),
        )

    return record
