"""The applied registry lives in the database, so every hub process reads the same one."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from certhub.hub.audit.entry import OK, Action, AuditRecord
from certhub.hub.audit.log import AuditLog
from certhub.hub.domain.holder import is_pilot_uscc_form
from certhub.hub.errors import FailedPrecondition
from certhub.hub.registry import Registry, parse_registry
from certhub.hub.store.engine import session_scope
from certhub.hub.store.models import Certificate, RegistryVersion
from certhub.signing.keys import KeyStatus

log = logging.getLogger("certhub.registry")

# How often a hub process looks for a newly applied registry. It bounds how long a
# compromised key or a removed principal keeps working after `certhub registry apply`.
RELOAD_INTERVAL_SECONDS = 1.0


# Reason of the refusal to trust a compromised key again without an explicit force.
REASON_COMPROMISED_KEY_TRUSTED_AGAIN = "COMPROMISED_KEY_TRUSTED_AGAIN"
# The key id as an audit entry names it: the 16 hex digits operators see elsewhere (`certhub
# fetch`, the console) and enough to be unique among a registry's keys; the full 64 would
# only risk runs of digits the audit log's free-text rule redacts (certhub.hub.audit.redact).
AUDIT_KEY_ID_DIGITS = 16


@dataclass(frozen=True)
class TrustedAgain:
    """A key the current registry marks compromised and a new one would trust again."""

    key_id: str
    owner: str
    becomes: str  # "active", "retired" or "removed" (a key no longer listed is not distrusted)


def trusted_again(current: Registry, new: Registry) -> list[TrustedAgain]:
    """Compromised keys of ``current`` that ``new`` lists as active or retired, or drops.

    Either turns every certificate the key signed VALID again at the next fetch (the hub
    distrusts exactly the keys the registry in force marks compromised)."""
    found = []
    for kid in sorted(current.compromised_key_ids):
        key = new.keys.get(kid)
        if key is None or key.status is not KeyStatus.COMPROMISED:
            found.append(
                TrustedAgain(
                    key_id=kid,
                    owner=current.keys[kid].owner,
                    becomes="removed" if key is None else str(key.status),
                )
            )
    return found


def stranded_certificates(session: Session, new: Registry) -> list[str]:
    """What applying ``new`` would leave stored but out of reach, in words for the operator
    (empty when nothing): current certificates of a holder whose legacy USCC ``new`` refuses
    (its holder ID is refused at fetch), of a type no longer listed (no item asks for it) or
    of a department no longer listed (no key verifies it). Counts over the current versions;
    nothing is deleted either way, so applying a registry that restores them brings them back.
    """
    current = Certificate.is_current.is_(True)
    warnings = []
    legacy_holders = session.execute(
        select(Certificate.holder_key, func.count())
        .where(current, Certificate.legacy_uscc.is_(True))
        .group_by(Certificate.holder_key)
    ).all()
    refused = [
        (key, n)
        for key, n in legacy_holders
        if not new.settings.accept_legacy_uscc or not is_pilot_uscc_form(key.partition(":")[2])
    ]
    if refused:
        why = (
            "accept_legacy_uscc = false"
            if not new.settings.accept_legacy_uscc
            else "accept_legacy_uscc admits only the early Fujian pilot form now"
        )
        warnings.append(
            f"{sum(n for _, n in refused):,} stored certificates of {len(refused):,} holders "
            f"with a legacy USCC become unreachable ({why}: their holder IDs are refused)"
        )
    for column, listed, what in (
        (Certificate.type_code, new.types, "types"),
        (Certificate.issuer_code, new.departments, "departments"),
    ):
        counts = session.execute(select(column, func.count()).where(current).group_by(column)).all()
        gone = sorted((code, n) for code, n in counts if code not in listed)
        if gone:
            codes = ", ".join(f"{code} ({n:,})" for code, n in gone[:_MAX_NAMED])
            more = f" and {len(gone) - _MAX_NAMED} more" if len(gone) > _MAX_NAMED else ""
            warnings.append(
                f"{sum(n for _, n in gone):,} stored certificates of {what} this file no "
                f"longer lists become unreachable: {codes}{more}"
            )
    return warnings


# How many codes a stranding warning names before it says "and N more": a terminal line.
_MAX_NAMED = 5


@dataclass(frozen=True)
class RegistryAuditor:
    """Who applies a registry and the log that records what needs recording (a compromised
    key trusted again): the hub's audit-log keys, from its data dir."""

    log: AuditLog
    principal: str


def apply_registry(
    session: Session,
    text: str,
    *,
    now: dt.datetime,
    trust_again: frozenset[str] = frozenset(),
    auditor: RegistryAuditor | None = None,
) -> tuple[int, Registry, bool]:
    """Validate the whole file, then store it; an invalid file raises RegistryError and
    changes nothing. Returns (version, registry, changed); re-applying the same text is a no-op.

    A key the registry in force marks compromised stays distrusted: a file that lists it as
    active or retired, or drops it, is refused (``FailedPrecondition``) unless its key id is
    in ``trust_again``; then the change is recorded in the audit log through ``auditor``, in
    the same transaction (no auditor: refused too)."""
    registry = parse_registry(text)
    latest = session.execute(
        select(RegistryVersion.id, RegistryVersion.digest, RegistryVersion.text)
        .order_by(RegistryVersion.id.desc())
        .limit(1)
    ).one_or_none()
    if latest is not None and latest.digest == registry.digest:
        return latest.id, registry, False
    again = trusted_again(parse_registry(latest.text), registry) if latest is not None else []
    unforced = [t for t in again if t.key_id not in trust_again]
    if unforced:
        listed = "; ".join(f"{t.key_id} of {t.owner} would be {t.becomes}" for t in unforced)
        raise FailedPrecondition(
            f"compromised keys would be trusted again, making what they signed VALID: "
            f"{listed}. Keep them compromised, or confirm each with --trust-again KEY_ID "
            "(recorded in the audit log)",
            reason=REASON_COMPROMISED_KEY_TRUSTED_AGAIN,
        )
    if again and auditor is None:
        raise FailedPrecondition(
            "trusting a compromised key again is recorded in the audit log: this caller has "
            "no audit-log keys",
            reason=REASON_COMPROMISED_KEY_TRUSTED_AGAIN,
        )
    row = RegistryVersion(digest=registry.digest, text=text, applied_at=now)
    session.add(row)
    session.flush()
    if again and auditor is not None:
        auditor.log.append(
            session,
            [
                AuditRecord(
                    time=now,
                    principal=auditor.principal,
                    action=Action.REGISTRY,
                    outcome=OK,
                    method=f"registry version {row.id}: compromised key "
                    f"{t.key_id[:AUDIT_KEY_ID_DIGITS]} trusted again ({t.becomes}, forced)",
                )
                for t in again
            ],
        )
        for t in again:
            log.warning(
                "registry version %d: compromised key %s of %s trusted again (%s), forced",
                row.id,
                t.key_id,
                t.owner,
                t.becomes,
            )
    return row.id, registry, True


class RegistrySource:
    """The newest applied registry, parsed once per version and re-checked at most every
    RELOAD_INTERVAL_SECONDS, so requests normally cost no query for it."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        reload_interval: float = RELOAD_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._interval = reload_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._version = -1
        self._registry = Registry.empty()
        self._checked = float("-inf")

    @property
    def version(self) -> int:
        return self._version

    def current(self) -> Registry:
        if self._clock() - self._checked >= self._interval:
            if self._version < 0:
                self.refresh()  # nothing to serve yet: wait for it
            elif self._lock.acquire(blocking=False):
                # One caller re-checks; the others keep the registry they have, at most one
                # interval old as always. Queueing them behind the lock made each of them
                # run the same query in turn (~25 queries a second with 16 busy threads).
                try:
                    self._refresh_locked()
                finally:
                    self._lock.release()
        return self._registry

    def refresh(self) -> Registry:
        with self._lock:
            return self._refresh_locked()

    def _refresh_locked(self) -> Registry:
        with session_scope(self._sessions) as session:
            latest = session.execute(
                select(RegistryVersion.id).order_by(RegistryVersion.id.desc()).limit(1)
            ).scalar_one_or_none()
            if latest is not None and latest != self._version:
                text = session.execute(
                    select(RegistryVersion.text).where(RegistryVersion.id == latest)
                ).scalar_one()
                self._registry = parse_registry(text)
                self._version = latest
                log.info("registry version %d loaded", latest)
        self._checked = self._clock()
        return self._registry
