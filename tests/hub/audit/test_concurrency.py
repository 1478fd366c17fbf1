"""Two hub processes and 16 concurrent clients on one PostgreSQL database append to one
audit log: the indices are gap-free and unique, and the result is one consistent tree that
`certhub audit verify` accepts."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from certhub.core.rpc.client import HubClient, HubClientError
from certhub.hub.cli.main import main
from certhub.hub.demo.world import DemoWorld, certificate_payload, citizen, sign_certificate
from certhub.hub.pki import init_hub_secrets, init_pki
from certhub.hub.services.registry_store import apply_registry
from certhub.hub.store.engine import make_session_factory, session_scope
from certhub.hub.store.models import AuditEntry, LogCheckpoint
from certhub.v1 import audit_pb2

REPO = Path(__file__).resolve().parents[3]
CLIENTS = 16
CALLS_PER_CLIENT = 12
# A hub process starts in about a second here; generous for a loaded 2-core machine.
START_TIMEOUT_SECONDS = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def two_hubs(
    tmp_path: Path, engine: Engine, world: DemoWorld, database_url: str
) -> Iterator[list[str]]:
    if not database_url.startswith("postgresql"):
        pytest.skip("several hub processes on one database: the PostgreSQL deployment")
    data = tmp_path / "data"
    init_pki(data)
    init_hub_secrets(data)
    with session_scope(make_session_factory(engine), write=True) as session:
        apply_registry(session, world.registry_toml(), now=dt.datetime.now(dt.UTC))
    addresses = [f"127.0.0.1:{_free_port()}" for _ in range(2)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    processes = []
    for n, address in enumerate(addresses):
        log = (tmp_path / f"hub{n}.log").open("wb")
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "certhub.hub.cli.main",
                    "serve",
                    "--insecure",
                    "--no-cache",
                    "--workers",
                    "1",
                    "--address",
                    address,
                    "--data-dir",
                    str(data),
                    "--db",
                    database_url,
                ],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    try:
        for address in addresses:
            _wait_serving(address)
        yield addresses
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_serving(address: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    with HubClient.insecure(address, "gulou-audit-office") as client:
        client.timeout = 2.0
        while True:
            try:
                client.stats()
                return
            except HubClientError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


def test_two_processes_sixteen_clients_one_gap_free_tree(
    two_hubs: list[str], world: DemoWorld, engine: Engine, tmp_path: Path, database_url: str
) -> None:
    card = world.type_by_name("居民身份证")
    police = world.departments[card.issuer]
    item = world.item_by_name("食品经营许可（新办）")
    indices: list[int] = []
    failures: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(CLIENTS)

    def client(n: int) -> None:
        address = two_hubs[n % 2]
        pushing = n % 4 < 2
        principal = police.principal if pushing else "gulou-service-centre"
        got: list[int] = []
        try:
            with HubClient.insecure(address, principal) as hub:
                start.wait()
                for call in range(CALLS_PER_CLIENT):
                    person = citizen(n * 100 + call)
                    if pushing:
                        payload = certificate_payload(
                            world, card.code, person, serial=n * 100 + call
                        )
                        got.append(hub.push(sign_certificate(payload, [police.key])).audit_index)
                    elif call % 5 == 4:
                        # A refusal is an entry too.
                        try:
                            hub.call(hub.audit.QueryAudit, audit_pb2.AuditQuery())
                        except HubClientError as e:
                            # -1 (no index) fails the range check below.
                            got.append(-1 if e.audit_index is None else e.audit_index)
                    else:
                        got.append(
                            hub.fetch(
                                id_type="RESIDENT_ID",
                                holder_id=person.holder.id,
                                service_item=item.code,
                                case_number=f"GL-C{n}-{call}",
                            ).audit_index
                        )
        except BaseException as e:  # reported below, with the thread's number
            failures.append(e)
        with lock:
            indices.extend(got)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures
    assert len(indices) == CLIENTS * CALLS_PER_CLIENT
    assert len(set(indices)) == len(indices), "two calls were answered with one index"

    sessions = make_session_factory(engine)
    with session_scope(sessions) as session:
        count, low, high = session.execute(
            select(func.count(), func.min(AuditEntry.idx), func.max(AuditEntry.idx))
        ).one()
        latest = session.execute(select(func.max(LogCheckpoint.size))).scalar_one()
    assert (low, high) == (0, count - 1), "the sequence has a gap"
    assert latest == count
    assert set(indices) <= set(range(count))

    data = tmp_path / "data"
    assert main(["audit", "verify", "--quiet", "--data-dir", str(data), "--db", database_url]) == 0
