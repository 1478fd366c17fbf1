"""The group committer alone on PostgreSQL (not a test): CPU of its thread per warm-fetch batch.

Submits ``--batches`` batches of ``--batch`` fetch units, each with a cached view to check
(``intake.FETCH_BATCH``, as ``Hub.fetch`` submits a fetch answered from the cache), waits
for each batch, and reports the committer thread's CPU per batch and per unit (its own
clock, so other load on the machine moves it little) and the wall time per batch. With
``--cases`` a share of the units also records a new case.

    PYTHONPATH=.:tests .venv/bin/python bench/commit_bench.py \\
        [--db postgresql+psycopg://postgres@127.0.0.1:5432/test] [--batch 4] [--batches 2000]

A fresh database is created next to the one in the URL and dropped afterwards.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import time

from sqlalchemy import func, select, text
from support.databases import fresh_postgres_database

from certhub.hub.audit.committer import GroupCommitter, Pending
from certhub.hub.audit.entry import OK, Action, AuditRecord
from certhub.hub.audit.log import AuditLog, AuditLogKeys
from certhub.hub.services import intake
from certhub.hub.store import migrate
from certhub.hub.store.engine import make_engine, make_session_factory
from certhub.hub.store.models import LogCheckpoint
from certhub.signing import Algorithm, NoteSigner, PrivateKey

HOLDERS = 1000
WARMUP_BATCHES = 200
NOW = dt.datetime.now(dt.UTC)


def _record(case: str) -> AuditRecord:
    return AuditRecord(
        time=NOW,
        principal="bench",
        action=Action.FETCH,
        outcome=OK,
        holder_commitment="0" * 64,
        service_item_code="ITEM",
        case_number=case,
        certificate_ids=("c1", "c2"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--batch", type=int, default=4, help="units per batch")
    parser.add_argument("--batches", type=int, default=2000)
    parser.add_argument("--cases", type=float, default=0.0, help="share of units with a case")
    args = parser.parse_args()
    rng = random.Random(1)
    with fresh_postgres_database(args.db, prefix="certhub_commit_bench") as url:
        engine = make_engine(url)
        migrate.upgrade(engine)
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO holder_states (holder_key, version) VALUES (:k, 1)"),
                [{"k": f"h{i}"} for i in range(HOLDERS)],
            )
        origin = "bench.example/audit"
        signer = NoteSigner(origin, PrivateKey.generate(Algorithm.ED25519))
        keys = AuditLogKeys(origin=origin, signer=signer, hmac_key=bytes(32))
        committer = GroupCommitter(sessions=make_session_factory(engine), audit_log=AuditLog(keys))
        clock = time.pthread_getcpuclockid(committer._thread.ident or 0)
        cases = 0

        def unit() -> Pending[str | None]:
            nonlocal cases
            case = None
            if rng.random() < args.cases:
                cases += 1
                case = (intake.Purpose("ITEM", f"K{cases}"), True, NOW)
            item = intake.FetchUnit(case=case, cached_view=(f"h{rng.randrange(HOLDERS)}", 1))
            return committer.submit(
                lambda s: intake.FETCH_BATCH.apply_all(s, [item])[0],
                lambda _v, _e: _record(f"K{cases}"),
                batch=intake.FETCH_BATCH,
                item=item,
            )

        def run(batches: int) -> None:
            for _ in range(batches):
                for pending in [unit() for _ in range(args.batch)]:
                    pending.result()

        def checkpoints() -> int:
            with engine.connect() as conn:
                return int(conn.execute(select(func.count()).select_from(LogCheckpoint)).one()[0])

        run(WARMUP_BATCHES)
        before = checkpoints()
        cpu, wall = time.clock_gettime(clock), time.perf_counter()
        run(args.batches)
        cpu, wall = time.clock_gettime(clock) - cpu, time.perf_counter() - wall
        batches = checkpoints() - before  # one checkpoint per group commit
        committer.close()
        engine.dispose()
    units = args.batches * args.batch
    print(
        f"{batches} group commits of {units / batches:.1f} units: committer CPU "
        f"{cpu / batches * 1e6:.0f} us per batch, {cpu / units * 1e6:.0f} us per unit; "
        f"wall {wall / batches * 1e6:.0f} us per batch"
    )


if __name__ == "__main__":
    main()
