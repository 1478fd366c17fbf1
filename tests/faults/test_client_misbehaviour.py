"""Clients that misbehave against a real `certhub serve` while well-behaved ones keep working:
push streams cancelled halfway (after some answers, or before reading any), channels closed
mid-stream, calls that exceed their deadlines, streams left idle, and 200 connections at
once. Meanwhile two windows fetch and a department pushes without pause.

Claims: the well-behaved clients see no error and no slow answer; every push the hub
acknowledged (to anyone, misbehaving or not) is stored; the hub does not keep threads
behind for the streams that went away; the audit log verifies.
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from sqlalchemy import select
from support.load import ITEM, LICENCE, WINDOW, Load
from support.processes import assert_audit_log_sound
from support.served import ServedHub, prepare_deployment, serve, wait_for

from certhub.core.rpc.client import HubClient
from certhub.hub.demo.world import DemoWorld, certificate_payload, enterprise, sign_certificate
from certhub.hub.grpc.servicers import STREAM_IN_FLIGHT
from certhub.hub.store.engine import make_engine, sqlite_url
from certhub.hub.store.models import Certificate
from certhub.v1 import common_pb2, ingest_pb2, ingest_pb2_grpc, intake_pb2, intake_pb2_grpc

CALL_DEADLINE = 10.0
# The slowest answer a well-behaved client may get while others misbehave (2-core machine
# shared with the misbehaving clients, which here run in the same test process).
SLOW_CALL_SECONDS = 3.0
# Streams cancelled after reading some answers, and how many they send and read.
CANCELLED_STREAMS = 8
STREAM_SENDS = 60
STREAM_READS = 20
# Streams that send more than the hub's per-stream window (certhub.hub.grpc.servicers
# STREAM_IN_FLIGHT = 128) and are cancelled without reading any answer.
FLOODED_STREAMS = 6
FLOOD_SENDS = 400
# A flooding client cancels once it has handed the hub more requests than its window holds
# (the client library takes the next request only when the previous one was written), so
# the hub's reader has a full window; this long at most, on a loaded machine.
FLOOD_TIMEOUT = 30.0
# Floods cancelled while the database is locked, per round (each leaves a full window).
LOCKED_FLOODS = 6
# After the lock is released, the pushes that queued behind it commit first; a call
# started within this long may wait for that backlog.
LOCK_BACKLOG_SECONDS = 5.0
# Idle streams (open, sending nothing) held while others work: a handful of adapters that
# connected and have nothing to send; well under the hub's 64 call threads.
IDLE_STREAMS = 8
# Connections opened at once, each making one fetch, all kept open together.
CONNECTIONS = 200
# Calls made with a deadline far too short to be met.
HOPELESS_CALLS = 50
# The hub's stream reader re-checks a dead call every 0.5 s (STREAM_POLL_SECONDS); its
# threads are gone well within this.
SETTLE_SECONDS = 3.0
# The thread count is read this often while waiting for it to settle (a poll period of the
# stream reader: a count unchanged across one has settled).
SETTLE_POLL_SECONDS = 0.5

_serials = itertools.count(2_000_000)


@pytest.fixture
def served(tmp_path: Path, world: DemoWorld) -> Iterator[ServedHub]:
    data = tmp_path / "data"
    data.mkdir()
    engine = make_engine(sqlite_url(data))
    prepare_deployment(data, engine, world.registry_toml())
    engine.dispose()
    hub = serve(data, sqlite_url(data), workers=1)
    try:
        yield hub
    finally:
        hub.kill()


def _threads(served: ServedHub) -> int:
    status = Path(f"/proc/{served.process.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))


def _settled_threads(served: ServedHub) -> int:
    """The hub's thread count once it is the same across a stream-reader poll period."""
    readings = [_threads(served)]

    def steady() -> bool:
        time.sleep(SETTLE_POLL_SECONDS)
        readings.append(_threads(served))
        return readings[-1] == readings[-2]

    wait_for(steady, timeout=SETTLE_SECONDS * 4, what="the hub's thread count to settle")
    return readings[-1]


def _requests(world: DemoWorld, count: int) -> Iterator[ingest_pb2.PushRequest]:
    licence = world.type_by_name(LICENCE)
    amr = world.departments[licence.issuer]
    for _ in range(count):
        serial = next(_serials)
        payload = certificate_payload(world, licence.code, enterprise(serial), serial=serial)
        yield ingest_pb2.PushRequest(
            envelope=sign_certificate(payload, [amr.key]), client_ref=str(serial)
        )


def _cancel_after_reading(client: HubClient, world: DemoWorld) -> list[str]:
    """Send STREAM_SENDS, read STREAM_READS answers, cancel; the acknowledged ids."""
    stub = ingest_pb2_grpc.IngestServiceStub(client.channel)
    call = stub.PushCertificates(_requests(world, STREAM_SENDS), timeout=CALL_DEADLINE)
    acknowledged: list[str] = []
    for n, result in enumerate(call, start=1):
        if result.outcome == ingest_pb2.ACCEPTED:
            acknowledged.append(result.certificate_id)
        if n == STREAM_READS:
            call.cancel()
            break
    return acknowledged


def _flood_and_cancel(client: HubClient, world: DemoWorld) -> None:
    sent: list[None] = []

    def counted() -> Iterator[ingest_pb2.PushRequest]:
        for request in _requests(world, FLOOD_SENDS):
            yield request
            sent.append(None)

    stub = ingest_pb2_grpc.IngestServiceStub(client.channel)
    call = stub.PushCertificates(counted(), timeout=CALL_DEADLINE)
    wait_for(
        lambda: len(sent) > STREAM_IN_FLIGHT,
        timeout=FLOOD_TIMEOUT,
        what=f"the flooding stream to send past the hub's window ({STREAM_IN_FLIGHT})",
    )
    call.cancel()


def _flood_while_locked(served: ServedHub, world: DemoWorld, database: Path) -> tuple[float, float]:
    """LOCKED_FLOODS flooded-and-cancelled streams while SQLite's write lock is held
    elsewhere; returns when the lock was held (monotonic begin, end)."""
    locker = sqlite3.connect(database, isolation_level=None)
    begin = time.monotonic()
    try:
        locker.execute("BEGIN IMMEDIATE")
        with served.client(world.departments[world.type_by_name(LICENCE).issuer].principal) as c:
            for _ in range(LOCKED_FLOODS):
                _flood_and_cancel(c, world)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    return begin, time.monotonic()


def _idle_stream(client: HubClient, release: threading.Event) -> grpc.RpcError | None:
    def nothing() -> Iterator[ingest_pb2.PushRequest]:
        release.wait()
        return
        yield

    stub = ingest_pb2_grpc.IngestServiceStub(client.channel)
    try:
        list(stub.PushCertificates(nothing(), timeout=CALL_DEADLINE * 3))
    except grpc.RpcError as error:
        return error
    return None


def _fetch(client: HubClient, world: DemoWorld, case: str, *, timeout: float) -> None:
    stub = intake_pb2_grpc.IntakeServiceStub(client.channel)
    stub.FetchCertificates(
        intake_pb2.FetchRequest(
            holder=common_pb2.Holder(id_type=common_pb2.USCC, id=enterprise(700_000).holder.id),
            service_item_code=world.item_by_name(ITEM).code,
            case_number=case,
        ),
        timeout=timeout,
    )


def test_misbehaving_clients_cost_others_nothing_and_lose_no_acknowledged_push(
    served: ServedHub, world: DemoWorld, tmp_path: Path
) -> None:
    load = Load(world=world, connect=served.client, fetchers=2, deadline=CALL_DEADLINE)
    load.seed()
    amr = load.department.principal
    acknowledged: list[str] = []
    locked: list[tuple[float, float]] = []
    with load:
        load.phase("before the misbehaviour")
        threads_before = _threads(served)

        # Streams cancelled halfway, after reading some answers.
        with served.client(amr) as department:
            for _ in range(CANCELLED_STREAMS):
                acknowledged += _cancel_after_reading(department, world)
        # Streams flooded past the hub's window and cancelled without reading anything.
        with served.client(amr) as department:
            for _ in range(FLOODED_STREAMS):
                _flood_and_cancel(department, world)
        # Streams flooded and cancelled while their pushes cannot commit (another process
        # holds SQLite's write lock, as a backup tool might), so the hub's per-stream window
        # is full when the client goes away. Two rounds: the first may grow the hub's thread
        # pool; the second reuses it, so any growth left after it is threads left behind.
        database = tmp_path / "data" / "certhub.db"
        locked.append(_flood_while_locked(served, world, database))
        after_first = _settled_threads(served)
        locked.append(_flood_while_locked(served, world, database))
        wait_for(
            lambda: _threads(served) - after_first < LOCKED_FLOODS // 2,
            timeout=SETTLE_SECONDS,
            what=(
                f"the second round's threads to go (before: {threads_before}, after the first "
                f"round: {after_first}, now: {_threads(served)})"
            ),
        )

        # A channel closed under a live stream.
        doomed = served.client(amr)
        stub = ingest_pb2_grpc.IngestServiceStub(doomed.channel)
        call = stub.PushCertificates(_requests(world, STREAM_SENDS), timeout=CALL_DEADLINE)
        next(call)
        doomed.close()

        # Calls that cannot meet their deadlines.
        with served.client(WINDOW) as hasty:
            for n in range(HOPELESS_CALLS):
                with pytest.raises(grpc.RpcError) as caught:
                    _fetch(hasty, world, f"HASTY-{n}", timeout=0.001)
                assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

        # Idle streams held open while 200 connections each fetch once.
        release = threading.Event()
        idle_clients = [served.client(amr) for _ in range(IDLE_STREAMS)]
        crowd = [served.client(WINDOW) for _ in range(CONNECTIONS)]
        try:
            with ThreadPoolExecutor(IDLE_STREAMS + 16) as pool:
                idle = [pool.submit(_idle_stream, c, release) for c in idle_clients]
                fetched = list(
                    pool.map(
                        lambda n: _fetch(crowd[n], world, f"CROWD-{n}", timeout=CALL_DEADLINE),
                        range(CONNECTIONS),
                    )
                )
                release.set()
                assert [f.result() for f in idle] == [None] * IDLE_STREAMS
            assert len(fetched) == CONNECTIONS
        finally:
            release.set()
            for c in [*idle_clients, *crowd]:
                c.close()
        load.phase("after the crowd")

    assert load.failures() == []
    # Calls overlapping the locked database (or the backlog it leaves) wait for it like
    # everyone: that is the lock's doing, not the misbehaving clients'.
    slow = [
        c
        for c in load.snapshot()
        if c.seconds > SLOW_CALL_SECONDS
        and not any(
            c.started < end + LOCK_BACKLOG_SECONDS and c.ended > begin for begin, end in locked
        )
    ]
    assert slow == [], slow[:5]
    served.stop()
    data = tmp_path / "data"
    engine = make_engine(sqlite_url(data))
    try:
        with engine.connect() as conn:
            stored = set(conn.execute(select(Certificate.certificate_id)).scalars())
        assert len(acknowledged) == CANCELLED_STREAMS * STREAM_READS
        assert set(acknowledged) <= stored
        assert set(load.acknowledged) <= stored
        assert_audit_log_sound(engine, data_dir=data, db_url=sqlite_url(data))
    finally:
        engine.dispose()
