"""Two hub processes (`certhub serve --workers 2` on PostgreSQL) group-committing batches
that touch the same rows: windows fetching for the same fresh case numbers at the same
moment, in different orders, from connections spread over both workers.

Found by bench/load_test.py: each worker's batch upserted its cases in arrival order, so two
batches could lock the same case rows in opposite orders; PostgreSQL broke the deadlock by
failing one batch, and every call in it answered UNAVAILABLE. Claim: no call fails.

The race is probabilistic: before the fix (hub.audit.committer locks the log head before a
batch writes anything) this test failed in each of five runs, with 2 to 11 failed calls.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from conftest import DATABASE_ENV
from support.databases import fresh_postgres_database
from support.load import ITEM, WINDOW, Load
from support.served import ServedHub, prepare_deployment, serve

from certhub.hub.demo.world import DemoWorld, enterprise
from certhub.hub.store.engine import make_engine
from certhub.v1 import common_pb2, intake_pb2, intake_pb2_grpc

# Clients (at least: more are opened until both workers hold one), each on its own
# channel, and rounds of fresh case numbers. Every round the clients fetch slices of the
# same CASES_PER_ROUND cases, each in its own rotation, so concurrent batches of the two
# workers hold them in different orders.
CLIENTS = 16
ROUNDS = 30
CASES_PER_ROUND = 24
CASES_PER_CLIENT = 6
CALL_DEADLINE = 10.0


# Two served workers share a PostgreSQL database (the served fixture reads its URL).
pytestmark = pytest.mark.postgres


@pytest.fixture
def served(tmp_path: Path, world: DemoWorld) -> Iterator[ServedHub]:
    base = os.environ.get(DATABASE_ENV)
    if not base:
        pytest.skip(f"{DATABASE_ENV} is not set: two hub workers share a PostgreSQL database")
    with fresh_postgres_database(base, prefix="certhub_faults") as url:
        engine = make_engine(url)
        prepare_deployment(tmp_path / "data", engine, world.registry_toml())
        engine.dispose()
        hub = serve(tmp_path / "data", url, workers=2)
        try:
            yield hub
        finally:
            hub.kill()


def test_two_workers_recording_the_same_cases_concurrently_fail_no_call(
    served: ServedHub, world: DemoWorld
) -> None:
    # A served case (the holder has the licence the item needs) is upserted as served:
    # ON CONFLICT DO UPDATE, which locks the row even once the other worker committed it.
    Load(
        world=world, connect=served.client, fetchers=0, pushers=0, holders=1, first_holder=1
    ).seed()
    clients = served.clients_on_every_worker(WINDOW, at_least=CLIENTS)
    failures: list[str] = []
    try:
        stubs = [intake_pb2_grpc.IntakeServiceStub(c.channel) for c in clients]
        item = world.item_by_name(ITEM).code
        holder = common_pb2.Holder(id_type=common_pb2.USCC, id=enterprise(1).holder.id)

        def fetch(stub: intake_pb2_grpc.IntakeServiceStub, case: str) -> None:
            try:
                stub.FetchCertificates(
                    intake_pb2.FetchRequest(
                        holder=holder, service_item_code=item, case_number=case
                    ),
                    timeout=CALL_DEADLINE,
                )
            except grpc.RpcError as error:
                failures.append(f"{error.code().name}: {error.details()}")

        for round_ in range(ROUNDS):
            start = threading.Barrier(len(stubs))

            def client(n: int, r: int = round_, go: threading.Barrier = start) -> None:
                go.wait()
                # Each process records a case once, so a client fetches only its slice:
                # most fetches are first ones; odd clients walk their slice backwards.
                step = 1 if n % 2 == 0 else -1
                for k in range(CASES_PER_CLIENT):
                    fetch(stubs[n], f"R{r}-{(n + step * k) % CASES_PER_ROUND}")

            threads = [threading.Thread(target=client, args=(n,)) for n in range(len(stubs))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    finally:
        for c in clients:
            c.close()
    assert failures == []
