"""No stale VALID, whatever Redis does to one worker: two hub processes' worth of Hubs over
one database and one Redis, worker A reaching Redis through a relay the test controls.
With A's path to Redis black-holed, a revocation through A commits and is acknowledged
while its cache invalidation is lost; worker B, which reaches Redis fine and holds the
VALID view in it, must still answer REVOKED. Before the freshness check (hub.services.
freshness) B served VALID until the entry's TTL ran out: two minutes."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from support.loop import LoopThread
from support.served import wait_for
from support.tcp_proxy import TcpRelay, tcp_relay

from certhub.hub.app import STALE_VIEW, Hub
from certhub.hub.caching import HolderScopes, build_holder_cache
from certhub.hub.demo.world import (
    DemoHolder,
    DemoWorld,
    certificate_payload,
    enterprise,
    sign_certificate,
    sign_revocation,
)
from certhub.hub.runtime import HubConfig, build_hub
from certhub.hub.services import ingest, intake
from certhub.hub.services.registry_store import apply_registry
from certhub.hub.store.engine import make_session_factory, session_scope
from certhub.hub.store.models import AuditEntry

ITEM = "公共场所卫生许可（新办）"
WINDOW = "gulou-service-centre"
# Threads fetching through B while A revokes with its Redis path cut, and the fetches they
# make before the revocation and after its acknowledgement: enough to interleave with it
# (ten a thread on each side), counted rather than timed so a slow machine makes as many.
HAMMERS = 3
HAMMER_FETCHES = 30
# How long those fetches may take on a loaded 2-core machine (each is milliseconds).
HAMMER_TIMEOUT = 60.0


@dataclass
class Worker:
    hub: Hub
    loop: LoopThread

    def close(self) -> None:
        self.loop.run(self.hub.close_async())
        self.loop.close()
        self.hub.close()


@dataclass
class Pair:
    a: Worker  # reaches Redis through the relay
    b: Worker
    relay: TcpRelay
    world: DemoWorld

    def push(self, worker: Worker, company: DemoHolder, serial: int) -> str:
        licence = self.world.type_by_name("营业执照")
        amr = self.world.departments[licence.issuer]
        payload = certificate_payload(self.world, licence.code, company, serial=serial)
        caller = worker.hub.registry().principals[amr.principal]
        envelope = sign_certificate(payload, [amr.key])
        worker.loop.run(worker.hub.push(caller, ingest.PushInput(envelope=envelope)))
        return payload.certificate_id

    def revoke(self, worker: Worker, certificate_id: str) -> None:
        amr = self.world.departments[self.world.type_by_name("营业执照").issuer]
        caller = worker.hub.registry().principals[amr.principal]
        envelope = sign_revocation(certificate_id, amr.key)
        worker.loop.run(worker.hub.revoke(caller, ingest.RevokeInput(envelope=envelope)))

    def fetch(self, worker: Worker, company: DemoHolder) -> tuple[list[str], int]:
        request = intake.FetchInput(
            id_type="USCC",
            holder_id=company.holder.id,
            purpose=intake.Purpose(self.world.item_by_name(ITEM).code, "GL-STALE"),
        )
        caller = worker.hub.registry().principals[WINDOW]
        out = worker.loop.run(worker.hub.fetch(caller, request))
        return [str(s.status) for s in out.result.certificates], out.audit_index


def _worker(tmp_path: Path, engine: Engine, redis_url: str, prefix: str) -> Worker:
    config = HubConfig(
        data_dir=tmp_path / "data", db_url=engine.url.render_as_string(hide_password=False)
    )
    cache = build_holder_cache(enabled=True, redis_url=redis_url, workers=2, prefix=prefix)
    assert isinstance(cache, HolderScopes)
    return Worker(hub=build_hub(config, engine, cache=cache), loop=LoopThread())


@pytest.fixture
def pair(
    tmp_path: Path, engine: Engine, world: DemoWorld, redis_url: str, cache_prefix: str
) -> Iterator[Pair]:
    with session_scope(make_session_factory(engine), write=True) as session:
        apply_registry(session, world.registry_toml(), now=dt.datetime.now(dt.UTC))
    host_port = redis_url.split("//", 1)[1].split("/", 1)[0]
    with tcp_relay(host_port) as relay:
        a = _worker(tmp_path, engine, f"redis://{relay.address}/0", cache_prefix)
        b = _worker(tmp_path, engine, redis_url, cache_prefix)
        try:
            yield Pair(a=a, b=b, relay=relay, world=world)
        finally:
            a.close()
            b.close()


def _cached(worker: Worker) -> HolderScopes:
    assert isinstance(worker.hub.cache, HolderScopes)
    return worker.hub.cache


def test_revocation_through_a_worker_cut_off_from_redis_is_never_served_valid(
    pair: Pair, engine: Engine
) -> None:
    company = enterprise(61)
    cid = pair.push(pair.a, company, serial=1)
    assert pair.fetch(pair.b, company)[0] == ["VALID"]
    assert pair.fetch(pair.b, company)[0] == ["VALID"]
    assert _cached(pair.b).hits >= 1, "B serves the holder from Redis"

    pair.relay.blackhole()
    pair.revoke(pair.a, cid)  # acknowledged: committed; its invalidation is lost
    assert _cached(pair.a).lost_invalidations == 1

    statuses, index = pair.fetch(pair.b, company)
    assert statuses == ["REVOKED"]
    # The cached VALID view was caught in B's group commit: one entry says so, and the
    # answer is the entry after it, read from the database.
    with engine.connect() as conn:
        outcomes = conn.execute(
            select(AuditEntry.outcome).where(AuditEntry.idx.in_([index - 1, index]))
        ).scalars()
        assert sorted(outcomes) == sorted([STALE_VIEW, "ok"])
    for _ in range(3):
        assert pair.fetch(pair.b, company)[0] == ["REVOKED"]
    pair.relay.restore()


def test_another_workers_revocation_is_caught_in_the_near_cache_once(
    pair: Pair, engine: Engine
) -> None:
    """Each worker keeps the views it read in its own near cache, which no invalidation from
    another worker reaches: B's VALID view there is caught by the check, dropped, and B's
    next fetches read the revoked state without another stale entry."""
    company = enterprise(63)
    cid = pair.push(pair.a, company, serial=1)
    assert pair.fetch(pair.b, company)[0] == ["VALID"]
    near_hits = _cached(pair.b).near_hits
    assert pair.fetch(pair.b, company)[0] == ["VALID"]
    assert _cached(pair.b).near_hits == near_hits + 1, "a repeat read costs no Redis trip"

    pair.revoke(pair.a, cid)  # A invalidates Redis; B's near cache cannot know
    assert _cached(pair.a).lost_invalidations == 0
    first = pair.fetch(pair.b, company)
    assert first[0] == ["REVOKED"]
    for _ in range(3):
        assert pair.fetch(pair.b, company)[0] == ["REVOKED"]
    with engine.connect() as conn:
        outcomes = conn.execute(
            select(AuditEntry.outcome).where(AuditEntry.idx >= first[1] - 1)
        ).scalars()
        assert list(outcomes).count(STALE_VIEW) == 1


def test_a_push_through_a_cut_off_worker_is_seen_at_once(pair: Pair) -> None:
    company = enterprise(62)
    pair.push(pair.a, company, serial=1)
    assert pair.fetch(pair.b, company)[0] == ["VALID"]
    pair.relay.blackhole()
    # A second licence of the holder: B must not answer from the view without it.
    pair.push(pair.a, company, serial=2)
    statuses, _ = pair.fetch(pair.b, company)
    assert statuses == ["VALID", "VALID"], "the new certificate is served at once"
    pair.relay.restore()


def test_no_fetch_after_the_acknowledgement_sees_valid_under_load(pair: Pair) -> None:
    company = enterprise(63)
    cid = pair.push(pair.a, company, serial=1)
    assert pair.fetch(pair.b, company)[0] == ["VALID"]
    pair.relay.blackhole()
    revoked_at: list[float] = []
    stale: list[list[str]] = []
    fetched: list[bool] = []  # one per fetch: whether it started after the acknowledgement
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            started = time.monotonic()
            statuses, _ = pair.fetch(pair.b, company)
            after = bool(revoked_at) and started > revoked_at[0]
            if after and statuses != ["REVOKED"]:
                stale.append(statuses)
            fetched.append(after)

    threads = [threading.Thread(target=hammer) for _ in range(HAMMERS)]
    for thread in threads:
        thread.start()
    wait_for(
        lambda: len(fetched) >= HAMMER_FETCHES,
        timeout=HAMMER_TIMEOUT,
        what=f"{HAMMER_FETCHES} fetches before the revocation",
    )
    pair.revoke(pair.a, cid)
    revoked_at.append(time.monotonic())
    wait_for(
        lambda: sum(fetched) >= HAMMER_FETCHES,
        timeout=HAMMER_TIMEOUT,
        what=f"{HAMMER_FETCHES} fetches after the revocation",
    )
    stop.set()
    for thread in threads:
        thread.join(30)
    pair.relay.restore()
    assert stale == []
