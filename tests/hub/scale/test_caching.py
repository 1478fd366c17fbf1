"""The hub over its holder cache (hub.caching): a racing fetch cannot bring back what a
revocation invalidated, a warm fetch reads no certificate rows, a Redis outage costs no
client an error, and the cache/limiter choice per configuration."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.engine import Engine
from support import statements
from support.loop import LoopThread
from support.redis_server import RedisServer

from certhub.cache import MemoryRateLimiter, RedisRateLimiter
from certhub.hub import caching
from certhub.hub.app import Hub, NoCache
from certhub.hub.audit.entry import Action
from certhub.hub.caching import HolderScopes, build_holder_cache, build_rate_limiter, choose_cache
from certhub.hub.demo.world import (
    DemoHolder,
    DemoWorld,
    certificate_payload,
    enterprise,
    sign_certificate,
    sign_revocation,
)
from certhub.hub.errors import ResourceExhausted
from certhub.hub.registry import Principal
from certhub.hub.runtime import HubConfig, build_hub
from certhub.hub.services import ingest, intake
from certhub.hub.services.registry_store import apply_registry
from certhub.hub.store.aio import CompiledRead
from certhub.hub.store.engine import make_session_factory, session_scope
from certhub.hub.store.models import AuditEntry, Case

ITEM = "公共场所卫生许可（新办）"
WINDOW = "gulou-service-centre"
# Fetches made while Redis is away: enough to cross several of the backend's 1 s probes.
OUTAGE_FETCHES = 40


class Deployment:
    """A Hub over ``engine`` with the demo world, for calling use cases directly."""

    def __init__(self, *, hub: Hub, world: DemoWorld) -> None:
        self.hub = hub
        self.world = world
        self.loop = LoopThread()
        self.licence = world.type_by_name("营业执照")
        self.amr = world.departments[self.licence.issuer]

    def close(self) -> None:
        self.loop.run(self.hub.close_async())
        self.loop.close()
        self.hub.close()

    def principal(self, name: str) -> Principal:
        return self.hub.registry().principals[name]

    def push(self, holder: DemoHolder, serial: int) -> str:
        payload = certificate_payload(self.world, self.licence.code, holder, serial=serial)
        self.loop.run(
            self.hub.push(
                self.principal(self.amr.principal),
                ingest.PushInput(envelope=sign_certificate(payload, [self.amr.key])),
            )
        )
        return payload.certificate_id

    def revoke(self, certificate_id: str) -> None:
        self.loop.run(
            self.hub.revoke(
                self.principal(self.amr.principal),
                ingest.RevokeInput(envelope=sign_revocation(certificate_id, self.amr.key)),
            )
        )

    def statuses(self, holder: DemoHolder) -> list[str]:
        result = self.loop.run(
            self.hub.fetch(
                self.principal(WINDOW),
                intake.FetchInput(
                    id_type="USCC",
                    holder_id=holder.holder.id,
                    purpose=intake.Purpose(self.world.item_by_name(ITEM).code, "GL-CACHE"),
                ),
            )
        ).result
        return [str(s.status) for s in result.certificates]


def _build(tmp_path: Path, engine: Engine, world: DemoWorld, **cache: Any) -> Deployment:
    with session_scope(make_session_factory(engine), write=True) as session:
        apply_registry(session, world.registry_toml(), now=dt.datetime.now(dt.UTC))
    config = HubConfig(
        data_dir=tmp_path / "data", db_url=engine.url.render_as_string(hide_password=False)
    )
    holder_cache = build_holder_cache(workers=1, enabled=True, **cache)
    return Deployment(hub=build_hub(config, engine, cache=holder_cache), world=world)


@pytest.fixture(params=["memory", "redis"])
def deployment(
    request: pytest.FixtureRequest, tmp_path: Path, engine: Engine, world: DemoWorld
) -> Iterator[Deployment]:
    if request.param == "redis":
        url: str | None = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("cache_prefix")
    else:
        url, prefix = None, "certhub"
    built = _build(tmp_path, engine, world, redis_url=url, prefix=prefix)
    assert isinstance(built.hub.cache, HolderScopes)
    yield built
    built.close()


def _cache(deployment: Deployment) -> HolderScopes:
    assert isinstance(deployment.hub.cache, HolderScopes)
    return deployment.hub.cache


@contextlib.contextmanager
def _statements(deployment: Deployment, engine: Engine) -> Iterator[list[str]]:
    """Every SQL statement the hub sends while the block runs: the engine's (the group
    commit's pipelined ones included), and on PostgreSQL its event loop's reads
    (hub.store.aio), which bypass the engine."""

    with statements.recorded(engine) as seen:

        async def read(sql: str) -> None:
            seen.append(sql)

        with _reads_on_the_loop(deployment, read):
            yield seen


@contextlib.contextmanager
def _reads_on_the_loop(
    deployment: Deployment, after: Callable[[str], Awaitable[None]]
) -> Iterator[None]:
    """Await ``after(sql)`` on the serving loop once each of the hub's async reads has its
    rows, before the hub uses them; nothing on SQLite, which has none. The reads themselves
    still go to the database."""
    reader = deployment.hub.reader
    if reader is None:
        yield
        return
    read = reader.rows

    async def rows(compiled: CompiledRead, params: Mapping[str, Any]) -> Sequence[Any]:
        found = await read(compiled, params)
        await after(compiled.sql)
        return found

    reader.rows = rows  # type: ignore[method-assign]
    try:
        yield
    finally:
        del reader.rows  # the class's method again


def _reads_certificates(statement: str) -> bool:
    text = " ".join(statement.split()).upper()
    return text.startswith("SELECT") and "FROM CERTIFICATES" in text


def test_warm_fetch_reads_no_certificate_rows(deployment: Deployment, engine: Engine) -> None:
    company = enterprise(11)
    deployment.push(company, serial=1)
    assert deployment.statuses(company) == ["VALID"]  # cold: loads and caches
    with _statements(deployment, engine) as seen:
        assert deployment.statuses(company) == ["VALID"]
    assert seen, "the audited fetch must still write its audit entry"
    assert [s for s in seen if _reads_certificates(s)] == []
    # The same case again: its KPI row cannot change, so the fetch skips writing it.
    assert [s for s in seen if "INTO cases" in s] == []
    assert _cache(deployment).hits >= 1


def test_a_cold_fetch_reads_the_view_in_one_statement(
    deployment: Deployment, engine: Engine
) -> None:
    """The holder's counter comes with its certificates: one snapshot, one round trip."""
    company = enterprise(14)
    deployment.push(company, serial=1)
    # Invalidated, as a push does: the next fetch reads the database.
    commitment = deployment.hub.commitment(company.holder.key())
    deployment.loop.run(deployment.hub.cache.invalidate([commitment]))
    with _statements(deployment, engine) as seen:
        assert deployment.statuses(company) == ["VALID"]
    reads = [s for s in seen if _reads_certificates(s)]
    assert len(reads) == 1
    assert "holder_states" in reads[0]
    assert [s for s in seen if " ".join(s.split()).upper().startswith("SELECT HOLDER_STATES")] == []


def test_a_case_first_unserved_then_served_is_counted_served(
    deployment: Deployment, engine: Engine
) -> None:
    company = enterprise(14)
    assert deployment.statuses(company) == []  # nothing yet: the case is not served
    deployment.push(company, serial=4)
    assert deployment.statuses(company) == ["VALID"]  # same case, now served
    assert deployment.statuses(company) == ["VALID"]
    with engine.connect() as conn:
        served = conn.execute(
            select(Case.served).where(Case.case_number == "GL-CACHE")
        ).scalar_one()
    assert served is True


def test_a_fetch_racing_a_revocation_cannot_put_the_valid_view_back(
    deployment: Deployment, engine: Engine
) -> None:
    """A fetch loads VALID rows, the revocation commits and invalidates, then the slow fetch
    stores what it loaded: later fetches must still see REVOKED."""
    company = enterprise(12)
    cid = deployment.push(company, serial=2)
    loaded, release = threading.Event(), threading.Event()
    armed = [True]

    def pause_after_load(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        # SQLite: the fetch's read runs in the loop's I/O threads; the revocation's in the
        # committer.
        committer = threading.current_thread().name == "audit-committer"
        if armed and not committer and _reads_certificates(statement):
            armed.clear()  # only the first fetch is the slow one
            loaded.set()
            assert release.wait(10), "the test never released the slow fetch"

    async def pause_on_the_loop(sql: str) -> None:
        # PostgreSQL: the fetch's read is awaited on the loop, which must keep serving the
        # revocation meanwhile, so the pause waits in a thread.
        if armed and _reads_certificates(sql):
            armed.clear()
            loaded.set()
            assert await asyncio.to_thread(release.wait, 10), "never released"

    slow_result: list[list[str]] = []
    slow = threading.Thread(target=lambda: slow_result.append(deployment.statuses(company)))
    event.listen(engine, "after_cursor_execute", pause_after_load)
    try:
        with _reads_on_the_loop(deployment, pause_on_the_loop):
            slow.start()
            assert loaded.wait(10), "the slow fetch never reached the database"
            deployment.revoke(cid)  # commits, invalidates, returns
            release.set()
            slow.join(10)
    finally:
        event.remove(engine, "after_cursor_execute", pause_after_load)
    assert slow_result == [["VALID"]]  # it really read before the revocation
    assert _cache(deployment).loads >= 1
    for _ in range(3):
        assert deployment.statuses(company) == ["REVOKED"]


@pytest.mark.slow
def test_concurrent_fetches_never_show_valid_after_revoke_returned(
    deployment: Deployment,
) -> None:
    stale: list[list[str]] = []
    for n in range(10):
        company = enterprise(200 + n)
        cid = deployment.push(company, serial=100 + n)
        stop = threading.Event()
        revoked_at: list[float] = []

        def hammer(
            company: DemoHolder = company,
            revoked_at: list[float] = revoked_at,
            stop: threading.Event = stop,
        ) -> None:
            while not stop.is_set():
                started = time.monotonic()
                seen = deployment.statuses(company)
                if revoked_at and started > revoked_at[0] and seen != ["REVOKED"]:
                    stale.append(seen)

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.02)
        deployment.revoke(cid)
        revoked_at.append(time.monotonic())
        time.sleep(0.05)
        stop.set()
        for t in threads:
            t.join()
    assert stale == []


@pytest.mark.parametrize("outage", ["killed", "paused"])
@pytest.mark.slow
def test_redis_outage_costs_no_fetch_and_heals(
    outage: str,
    tmp_path: Path,
    engine: Engine,
    world: DemoWorld,
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    built = _build(tmp_path, engine, world, redis_url=redis_server.url, prefix="outage")
    cache = _cache(built)
    try:
        company = enterprise(13)
        cid = built.push(company, serial=3)
        assert built.statuses(company) == ["VALID"]
        assert built.statuses(company) == ["VALID"]
        hits_before = cache.hits
        assert hits_before >= 1

        caplog.set_level(logging.WARNING, logger="certhub.cache")
        assert redis_server.process is not None
        if outage == "killed":
            redis_server.kill()
        else:
            redis_server.process.send_signal(signal.SIGSTOP)
        failures = 0
        deadline = time.monotonic() + 2.5  # spans two probes of the 1 s retry interval
        fetched = 0
        while fetched < OUTAGE_FETCHES or time.monotonic() < deadline:
            try:
                assert built.statuses(company) == ["VALID"]
            except Exception:
                failures += 1
            fetched += 1
        # A revocation while Redis is away: the hub answers, the bump is owed.
        built.revoke(cid)
        assert built.statuses(company) == ["REVOKED"]
        assert failures == 0
        assert cache.outages == 1
        assert cache.errors >= 1
        assert cache.lost_invalidations == 1
        warnings = [r for r in caplog.records if "redis unavailable" in r.getMessage()]
        assert len(warnings) == 1

        if outage == "killed":
            redis_server.start()
        else:
            redis_server.process.send_signal(signal.SIGCONT)
        time.sleep(1.2)  # the backend probes again after its retry interval
        # The entry cached as VALID before the outage (still there if Redis was only paused)
        # must stay unreachable: the epoch the hub bumps on reconnect hides it.
        assert built.statuses(company) == ["REVOKED"]
        reads = cache.reads
        hits = cache.hits
        assert built.statuses(company) == ["REVOKED"]
        assert cache.reads == reads + 1
        assert cache.hits == hits + 1, "the cache is used again after Redis came back"
        assert cache.outages == 1
    finally:
        built.close()


def test_cache_choice_per_configuration(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(caching, "_announced", set())  # as in a fresh process
    assert choose_cache(enabled=True, redis_url=None, workers=1).kind == "memory"
    assert choose_cache(enabled=True, redis_url="redis://x", workers=4).kind == "redis"
    assert choose_cache(enabled=False, redis_url="redis://x", workers=1).kind == "off"
    several = choose_cache(enabled=True, redis_url=None, workers=2)
    assert several.kind == "off"
    assert "cannot see other processes' invalidations" in several.reason
    caplog.set_level(logging.INFO, logger="certhub.cache")
    built = build_holder_cache(enabled=True, redis_url=None, workers=2, prefix="certhub")
    assert isinstance(built, NoCache)
    [message] = [r.getMessage() for r in caplog.records]
    assert message.startswith("holder cache: off")
    # A second hub in this process (or a forked worker) makes the same choice silently.
    build_holder_cache(enabled=True, redis_url=None, workers=2, prefix="certhub")
    assert len(caplog.records) == 1


def test_rate_limiter_choice(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(caching, "_limits_announced", set())
    caplog.set_level(logging.WARNING, logger="certhub.cache")
    assert isinstance(build_rate_limiter(redis_url=None, prefix="certhub"), MemoryRateLimiter)
    assert caplog.records == []  # one process: its buckets are the only ones
    for _ in range(2):
        build_rate_limiter(redis_url=None, prefix="certhub", workers=3)
    [warning] = [r.getMessage() for r in caplog.records]
    assert "up to 3 times its registry rate" in warning
    limiter = build_rate_limiter(redis_url="redis://127.0.0.1:1/0", prefix="certhub")
    assert isinstance(limiter, RedisRateLimiter)
    limiter.close()


def test_over_the_limit_is_refused_with_retry_after_and_audited(
    tmp_path: Path, engine: Engine, world: DemoWorld
) -> None:
    text = world.registry_toml().replace(
        f'name = "{WINDOW}"\n',
        f'name = "{WINDOW}"\nrate_limit = {{ per_second = 2.0, burst = 3 }}\n',
        1,
    )
    with session_scope(make_session_factory(engine), write=True) as session:
        apply_registry(session, text, now=dt.datetime.now(dt.UTC))
    config = HubConfig(
        data_dir=tmp_path / "data", db_url=engine.url.render_as_string(hide_password=False)
    )
    hub = build_hub(config, engine)
    loop = LoopThread()
    try:
        window = hub.registry().principals[WINDOW]
        method = "/certhub.v1.IntakeService/FetchCertificates"
        for _ in range(3):
            loop.run(hub.admit(window, method=method))
        with pytest.raises(ResourceExhausted) as refused:
            loop.run(hub.admit(window, method=method))
        # Another principal has its own (here: no) limit.
        department = world.departments[world.type_by_name("营业执照").issuer].principal
        loop.run(hub.admit(hub.registry().principals[department], method=method))
    finally:
        loop.close()
        hub.close()
    error = refused.value
    assert error.reason == "RATE_LIMITED"
    assert error.retry_after is not None
    assert 0 < error.retry_after <= 0.5  # one token at 2/s
    assert error.audit_index is not None
    with engine.connect() as conn:
        leaf = conn.execute(
            select(AuditEntry.leaf).where(AuditEntry.idx == error.audit_index)
        ).scalar_one()
    assert f'"{Action.REFUSED}"'.encode() in leaf
    assert b'"RESOURCE_EXHAUSTED"' in leaf
    assert method.encode() in leaf
