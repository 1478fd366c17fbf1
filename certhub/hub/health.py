"""Health: each hub process tells its load balancer whether it can serve.

``HealthChecker`` probes the database every few seconds from a daemon thread (``SELECT 1``
and the schema revision, bounded by a short timeout) and sets every certhub service of the
standard ``grpc.health.v1`` servicer to NOT_SERVING while the database is unreachable or its
schema is behind this code's migrations (``certhub db upgrade`` not run yet), SERVING again
when the probe passes. A schema ahead of the code (a rolling upgrade in progress) serves.
A probe that hangs (a frozen database server) counts as a failure once the timeout passes;
no new probe starts while it hangs.

``hold(service, problem)`` keeps one service NOT_SERVING for the life of the process
whatever the database probe says: the audit self-check holds the audit service when the log
it serves no longer matches what the hub signed (``certhub.hub.audit.selfcheck``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from grpc_health.v1 import health_pb2
from sqlalchemy import text

from certhub.hub.observability.metrics import HubMetrics, metrics
from certhub.hub.store import migrate

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

__all__ = ["HEALTH_CHECK_SECONDS", "PROBE_TIMEOUT_SECONDS", "HealthChecker", "Probe"]

log = logging.getLogger("certhub.health")

# How often each process probes its database. Load balancers check every 5-10 s; probing
# every 2 s lets one notice an outage within a check interval.
HEALTH_CHECK_SECONDS = 2.0
# A probe slower than this is a failure. SELECT 1 takes milliseconds; PostgreSQL connects
# time out after 3 s (certhub.hub.store.engine.PG_CONNECT_TIMEOUT_S), so 5 s only fires on a hang.
PROBE_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Probe:
    """One probe's verdict; ``problem`` says why it is not serving."""

    serving: bool
    problem: str = ""


def known_revisions() -> frozenset[str]:
    """Every migration revision this code ships."""
    config = Config()
    config.set_main_option("script_location", str(migrate.MIGRATIONS))
    return frozenset(s.revision for s in ScriptDirectory.from_config(config).walk_revisions())


def probe_database(
    sessions: sessionmaker[Session], head: str, known: frozenset[str] = frozenset()
) -> Probe:
    """``SELECT 1`` and compare the schema revision with ``head``; never raises.

    A revision this code does not know is a schema AHEAD of it: during a rolling upgrade
    the new release migrated first (migrations are additive, so the old release keeps
    working) and this process is about to be replaced. That serves, with a note.
    """
    try:
        with sessions() as session:
            # Not through the engine's compiled-statement cache: every MigrationContext builds
            # a new alembic_version Table, so each probe added a cache entry pinning it (~16
            # KiB) until the LRU held 750 of them: a process grew ~0.5 MiB a minute for 25
            # minutes (issue 6 load test). Compiling two tiny statements per probe is free.
            connection = session.connection(execution_options={"compiled_cache": None})
            connection.execute(text("SELECT 1"))
            current = MigrationContext.configure(connection).get_current_revision()
    except Exception as error:  # any failure to reach the database means not serving
        return Probe(serving=False, problem=f"database unreachable ({type(error).__name__})")
    if current == head:
        return Probe(serving=True)
    if current is not None and current not in known:
        return Probe(serving=True, problem=f"schema {current} is newer than this code ({head})")
    return Probe(
        serving=False,
        problem=f"schema behind (at {current or 'empty'}, code needs {head}): "
        "run `certhub db upgrade`",
    )


class StatusBoard(Protocol):
    """Where verdicts are published: the health servicer, reached from this thread."""

    def set(self, service: str, status: health_pb2.HealthCheckResponse.ServingStatus) -> None: ...


class HealthChecker:
    """Keeps ``servicer``'s status of ``services`` in line with the database's health."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        servicer: StatusBoard,
        services: Sequence[str],
        interval: float = HEALTH_CHECK_SECONDS,
        timeout: float = PROBE_TIMEOUT_SECONDS,
        m: HubMetrics | None = None,
    ) -> None:
        self._sessions = sessions
        self._servicer = servicer
        self._services = tuple(services)
        self._interval = interval
        self._timeout = timeout
        self._m = m or metrics()
        self._head = migrate.head_revision()
        self._known = known_revisions()
        self._serving: bool | None = None
        self._last: Probe | None = None
        # Services held NOT_SERVING whatever the probe says -> why. Publishing happens
        # under the lock, so a hold is never overtaken by a SERVING computed before it.
        self._held: dict[str, str] = {}
        self._publishing = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health-checker", daemon=True)
        self._probing: threading.Thread | None = None

    @property
    def serving(self) -> bool | None:
        """The last verdict (None before the first probe)."""
        return self._serving

    def start(self) -> None:
        """Probe once now (so the first answer is true), then every ``interval``."""
        self.check()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def hold(self, service: str, problem: str) -> None:
        """Keep ``service`` NOT_SERVING from now on (logged once); publishes at once. Call it
        from any thread but the serving loop's (publishing waits for that loop)."""
        with self._publishing:
            if service in self._held:
                return
            self._held[service] = problem
            log.error("NOT_SERVING %s: %s", service, problem)
            self._servicer.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)

    @property
    def held(self) -> dict[str, str]:
        return dict(self._held)

    def check(self) -> Probe:
        """Run one probe within the timeout and publish its verdict."""
        verdict = self._probe_with_timeout()
        self._publish(verdict)
        return verdict

    def _probe_with_timeout(self) -> Probe:
        if self._probing is not None and self._probing.is_alive():
            return Probe(serving=False, problem="database probe still hanging")
        result: list[Probe] = []
        self._probing = threading.Thread(
            target=lambda: result.append(probe_database(self._sessions, self._head, self._known)),
            name="health-probe",
            daemon=True,
        )
        self._probing.start()
        self._probing.join(self._timeout)
        if not result:
            return Probe(serving=False, problem=f"database probe took over {self._timeout:g} s")
        return result[0]

    def _publish(self, verdict: Probe) -> None:
        if verdict != self._last:
            if verdict.serving and verdict.problem:
                log.warning("SERVING: %s", verdict.problem)
            elif verdict.serving:
                log.info("SERVING: database reachable and schema current")
            else:
                log.warning("NOT_SERVING: %s", verdict.problem)
        self._last = verdict
        self._serving = verdict.serving
        self._m.serving.set(1 if verdict.serving else 0)
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if verdict.serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        # After enter_graceful_shutdown the servicer ignores these: shutdown wins.
        with self._publishing:
            for name in self._services:
                held = name in self._held
                self._servicer.set(
                    name, health_pb2.HealthCheckResponse.NOT_SERVING if held else status
                )

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.check()
