"""The applied registry lives in the database, so every hub process reads the same one."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from hub.registry import Registry, parse_registry
from hub.store.engine import session_scope
from hub.store.models import RegistryVersion

log = logging.getLogger("certhub.registry")

# How often a hub process looks for a newly applied registry. It bounds how long a
# compromised key or a removed principal keeps working after `certhub registry apply`.
RELOAD_INTERVAL_SECONDS = 1.0


def apply_registry(session: Session, text: str, *, now: dt.datetime) -> tuple[int, Registry, bool]:
    """Validate the whole file, then store it; an invalid file raises RegistryError and
    changes nothing. Returns (version, registry, changed); re-applying the same text is a no-op."""
    registry = parse_registry(text)
    latest = session.execute(
        select(RegistryVersion.id, RegistryVersion.digest)
        .order_by(RegistryVersion.id.desc())
        .limit(1)
    ).one_or_none()
    if latest is not None and latest.digest == registry.digest:
        return latest.id, registry, False
    row = RegistryVersion(digest=registry.digest, text=text, applied_at=now)
    session.add(row)
    session.flush()
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
