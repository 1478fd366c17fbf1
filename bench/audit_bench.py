"""Audit log at scale (not a test): proofs, holder queries, and group-commit appends vs fetches.

One run:

1. builds a log of ``--entries`` entries (default 1,000,000) by direct appends in large
   batches (``AuditLog.append``, the same code the group commit runs), with real holder
   commitments spread over ``--holders`` citizens;
2. pushes real signed certificates for a few hundred citizens, then starts the hub
   (``certhub serve --insecure``) as a subprocess on the same database;
3. measures the median latency of inclusion proofs (service function and over gRPC),
   of QueryAudit by holder (service function and over gRPC, where each query is itself
   appended), and of consistency proofs;
4. measures the log's own append rate: ``--threads`` threads submitting audit-only units to a
   GroupCommitter for ``--seconds``; and the hub's FetchCertificates rate over gRPC with
   the same number of concurrent callers (in ``--client-processes`` processes, so the Python
   client is not the limit) for ``--seconds``. It prints the ratio.

    PYTHONPATH=. /work/venv/bin/python bench/audit_bench.py [--entries 1000000]
    CERTHUB_BENCH_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        PYTHONPATH=. /work/venv/bin/python bench/audit_bench.py

With CERTHUB_BENCH_DATABASE_URL a fresh PostgreSQL database is created in that server and
dropped afterwards; otherwise a SQLite file in a temporary directory is used.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import multiprocessing as mp
import os
import random
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from certhub.core.rpc.client import HubClient, HubClientError
from certhub.hub.audit import reads
from certhub.hub.audit.committer import GroupCommitter
from certhub.hub.audit.entry import OK, Action, AuditRecord
from certhub.hub.audit.verify import verify_log
from certhub.hub.demo.world import build_world, certificate_payload, citizen, sign_certificate
from certhub.hub.pki import init_pki
from certhub.hub.runtime import HubConfig, build_hub
from certhub.hub.services.ingest import PushInput
from certhub.hub.services.registry_store import apply_registry
from certhub.hub.store import migrate
from certhub.hub.store.engine import make_engine, make_session_factory, session_scope
from certhub.signing import NoteVerifier
from certhub.v1 import audit_pb2, common_pb2

REPO = Path(__file__).resolve().parents[1]
DATABASE_ENV = "CERTHUB_BENCH_DATABASE_URL"

# The scale and targets.
DEFAULT_ENTRIES = 1_000_000
TARGET_PROOF_MS = 5.0
TARGET_QUERY_MS = 20.0
TARGET_APPEND_OVER_FETCH = 5.0
# Distinct holders in the synthetic log: ~20 entries each at 1M, like a district where a
# citizen's certificates are fetched a few times a year over several years.
DEFAULT_HOLDERS = 50_000
# Entries per direct append transaction while building (big batches: building is setup).
BUILD_BATCH = 10_000
# Concurrent callers for both rates, as in the fetch benchmark (issue 4): 32.
DEFAULT_THREADS = 32
DEFAULT_CLIENT_PROCESSES = 2
DEFAULT_SECONDS = 10.0
# Units each appender keeps in flight when measuring the log's capacity: 32 x 8 = 256 fills
# one group-commit batch (committer.MAX_BATCH), as a push stream's reader does.
APPEND_WINDOW = 8
# Latency samples per measurement: enough for a stable median on a noisy machine.
SAMPLES = 1000
# Citizens with pushed certificates, fetched in the throughput run.
FETCH_HOLDERS = 300
START_TIMEOUT_SECONDS = 60.0


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def median_ms(run: Callable[[int], object], samples: int, rng: random.Random) -> float:
    times = []
    for _ in range(samples):
        arg = rng.randrange(1 << 62)
        start = time.perf_counter()
        run(arg)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


# --- setup ------------------------------------------------------------------------------------


def fresh_database(base: str | None, tmp: Path) -> tuple[str, Callable[[], None]]:
    if not base:
        return f"sqlite:///{tmp / 'certhub.db'}", lambda: None
    url = make_url(base)
    name = f"certhub_audit_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url.set(database=name).render_as_string(hide_password=False), drop


def synthetic(count: int, commitments: list[str], start: int) -> Iterator[AuditRecord]:
    principals = ("gulou-service-centre", "wenquan-street-office", "gulou-amr")
    base = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    for n in range(start, start + count):
        yield AuditRecord(
            time=base + dt.timedelta(seconds=n * 60),
            principal=principals[n % 3],
            action=Action.FETCH,
            outcome=OK,
            holder_commitment=commitments[(n * 7919) % len(commitments)],
            certificate_ids=(f"1.2.156.3005.2.{n % 100_000:021d}",),
            service_item_code=f"350102-{n % 40:04d}",
            case_number=f"GL-{n:010d}",
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --- rates ------------------------------------------------------------------------------------


def append_rate(committer: GroupCommitter, threads: int, seconds: float, window: int) -> float:
    """Entries/s committed when ``threads`` submitters each keep ``window`` units in flight
    (window 1: each waits for its commit, like a unary call; larger: like a push stream)."""
    stop = time.monotonic() + seconds
    counts = [0] * threads

    def worker(slot: int) -> None:
        record = AuditRecord(
            time=dt.datetime.now(dt.UTC),
            principal="bench-appender",
            action=Action.GET,
            outcome=OK,
            holder_commitment="00" * 32,
        )
        inflight: collections.deque[Any] = collections.deque()
        while time.monotonic() < stop:
            inflight.append(committer.submit_entry(record))
            if len(inflight) >= window:
                inflight.popleft().result()
                counts[slot] += 1
        while inflight:
            inflight.popleft().result()
            counts[slot] += 1

    started = time.monotonic()
    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(counts) / (time.monotonic() - started)


def _fetch_worker(
    address: str, holders: list[str], item: str, threads: int, seconds: float, out: Any
) -> None:
    stop = time.monotonic() + seconds
    counts = [0] * threads
    errors = [0] * threads

    def worker(slot: int) -> None:
        rng = random.Random(slot)
        with HubClient.insecure(address, "gulou-service-centre") as client:
            while time.monotonic() < stop:
                try:
                    client.fetch(
                        id_type="RESIDENT_ID",
                        holder_id=rng.choice(holders),
                        service_item=item,
                        case_number=f"B-{slot}-{counts[slot]}",
                    )
                    counts[slot] += 1
                except HubClientError:
                    errors[slot] += 1

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    out.put((sum(counts), sum(errors)))


def fetch_rate(
    address: str, holders: list[str], item: str, threads: int, processes: int, seconds: float
) -> tuple[float, int]:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    per = max(1, threads // processes)
    procs = [
        ctx.Process(target=_fetch_worker, args=(address, holders, item, per, seconds, out))
        for _ in range(processes)
    ]
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    # Each process counts only its own measured window (spawning takes about a second).
    return sum(r[0] for r in results) / seconds, sum(r[1] for r in results)


# --- main -------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=DEFAULT_ENTRIES)
    parser.add_argument("--holders", type=int, default=DEFAULT_HOLDERS)
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    parser.add_argument("--client-processes", type=int, default=DEFAULT_CLIENT_PROCESSES)
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS)
    parser.add_argument("--samples", type=int, default=SAMPLES)
    parser.add_argument(
        "--entries-per-checkpoint",
        type=int,
        default=BUILD_BATCH,
        help="entries per append while building (each signs a checkpoint); a served hub "
        "signs one per group commit, 5-15 entries under load",
    )
    parser.add_argument(
        "--verify", action="store_true", help="also time a full `certhub audit verify` pass"
    )
    args = parser.parse_args()

    rng = random.Random(6962)
    world = build_world()
    with tempfile.TemporaryDirectory(prefix="audit-bench-") as tmp_name:
        tmp = Path(tmp_name)
        db_url, drop = fresh_database(os.environ.get(DATABASE_ENV), tmp)
        try:
            return run(args, rng, world, tmp, db_url)
        finally:
            drop()


def run(args: argparse.Namespace, rng: random.Random, world: Any, tmp: Path, db_url: str) -> int:
    backend = db_url.split(":", 1)[0]
    log(f"database: {backend}")
    data = tmp / "data"
    init_pki(data)
    engine = make_engine(db_url)
    migrate.upgrade(engine)
    sessions = make_session_factory(engine)
    with session_scope(sessions, write=True) as session:
        apply_registry(session, world.registry_toml(), now=dt.datetime.now(dt.UTC))
    config = HubConfig(data_dir=data, db_url=db_url, cache_enabled=False)
    hub = build_hub(config, engine)

    people = [citizen(n) for n in range(args.holders)]
    commitments = [hub.commitment(p.holder.key()) for p in people]

    # 1. Build the log.
    started = time.monotonic()
    built = 0
    while built < args.entries:
        step = min(args.entries_per_checkpoint, args.entries - built)
        with session_scope(sessions, write=True) as session:
            hub.audit_log.append(session, list(synthetic(step, commitments, built)))
        built += step
        if built % 100_000 < step:
            log(f"built {built:,} entries")
    build_seconds = time.monotonic() - started
    log(f"built {built:,} entries in {build_seconds:.0f} s ({built / build_seconds:,.0f}/s)")

    verify_line = ""
    if args.verify:
        verifier = NoteVerifier.from_vkey(hub.audit_log.keys.signer.vkey)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started, cpu_started = time.monotonic(), time.process_time()
        with session_scope(sessions) as session:
            report = verify_log(session, verifier)
        seconds, cpu = time.monotonic() - started, time.process_time() - cpu_started
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        assert report.ok, report.problem
        verify_line = (
            f"audit verify (full pass)         {seconds:.1f} s ({cpu:.1f} s CPU) for "
            f"{report.entries:,} entries and "
            f"{report.checkpoints:,} checkpoints ({report.entries / seconds:,.0f}/s; peak RSS "
            f"{rss_before // 1024} -> {rss_after // 1024} MiB)"
        )
        log(verify_line)

    # 2. Certificates to fetch, pushed through the hub's own path.
    card = world.type_by_name("居民身份证")
    police = world.departments[card.issuer]
    caller = hub.registry().principals[police.principal]

    async def push_holders() -> None:
        pending = [
            hub.submit_push(
                caller,
                PushInput(
                    envelope=sign_certificate(
                        certificate_payload(world, card.code, people[n], serial=n), [police.key]
                    )
                ),
            )
            for n in range(FETCH_HOLDERS)
        ]
        for finish in pending:
            await finish()

    asyncio.run(push_holders())
    item = world.item_by_name("食品经营许可（新办）").code
    fetch_holders = [people[n].holder.id for n in range(FETCH_HOLDERS)]

    # 3. Latencies at the service level (one read transaction per call, as the servicer does).
    with session_scope(sessions) as session:
        size = reads.log_size(session)
    proof_service = median_ms(
        lambda r: _in_session(sessions, lambda s: reads.inclusion_proof(s, r % size, 0)),
        args.samples,
        rng,
    )
    consistency_service = median_ms(
        lambda r: _in_session(
            sessions, lambda s: reads.consistency_proof(s, 1 + r % (size - 1), 0)
        ),
        args.samples,
        rng,
    )
    query_service = median_ms(
        lambda r: _in_session(
            sessions,
            lambda s: reads.query(
                s,
                reads.QueryFilter(holder_commitment=commitments[r % len(commitments)]),
                page_size=reads.DEFAULT_PAGE_SIZE,
                before=None,
            ),
        ),
        args.samples,
        rng,
    )
    log(f"service: proof {proof_service:.2f} ms, query {query_service:.2f} ms")

    # 4a. The log's own append rate, group-committed, audit-only units.
    committer = GroupCommitter(sessions=sessions, audit_log=hub.audit_log)
    appends_unary = append_rate(committer, args.threads, args.seconds, 1)
    log(f"append rate, {args.threads} waiting callers: {appends_unary:,.0f}/s")
    appends = append_rate(committer, args.threads, args.seconds, APPEND_WINDOW)
    committer.close()
    hub.close()
    engine.dispose()
    log(f"append rate {appends:,.0f}/s")

    # 4b. The hub, as deployed, in its own process.
    address = f"127.0.0.1:{free_port()}"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "certhub.hub.cli.main",
            "serve",
            "--insecure",
            "--workers",
            "1",
            "--address",
            address,
            "--data-dir",
            str(data),
            "--db",
            db_url,
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "hub.log").open("wb"),
    )
    try:
        _wait(address)
        with HubClient.insecure(address, "gulou-audit-office") as auditor:
            proof_grpc = median_ms(
                lambda r: auditor.call(
                    auditor.audit.GetInclusionProof,
                    audit_pb2.GetInclusionProofRequest(leaf_index=r % size),
                ),
                args.samples,
                rng,
            )
            query_grpc = median_ms(
                lambda r: auditor.call(
                    auditor.audit.QueryAudit,
                    audit_pb2.AuditQuery(
                        holder=common_pb2.Holder(
                            id_type=common_pb2.RESIDENT_ID,
                            id=people[r % len(people)].holder.id,
                        )
                    ),
                ),
                args.samples,
                rng,
            )
        log(f"gRPC: proof {proof_grpc:.2f} ms, query {query_grpc:.2f} ms")
        fetches, errors = fetch_rate(
            address, fetch_holders, item, args.threads, args.client_processes, args.seconds
        )
        log(f"fetch rate {fetches:,.0f}/s ({errors} errors)")
    finally:
        server.terminate()
        server.wait(timeout=60)

    ratio = appends / fetches if fetches else float("inf")
    print(f"database                         {backend}")
    print(f"entries in the log               {size:,} (built at {built / build_seconds:,.0f}/s)")
    print(
        f"inclusion proof, service median  {proof_service:.2f} ms   (target < {TARGET_PROOF_MS} ms)"
    )
    print(f"inclusion proof, gRPC median     {proof_grpc:.2f} ms")
    print(f"consistency proof, service med.  {consistency_service:.2f} ms")
    print(
        f"QueryAudit by holder, service    {query_service:.2f} ms   (target < {TARGET_QUERY_MS} ms)"
    )
    print(
        f"QueryAudit by holder, gRPC       {query_grpc:.2f} ms   (includes appending its own entry)"
    )
    in_flight = args.threads * APPEND_WINDOW
    print(f"append rate, group commit        {appends:,.0f} entries/s ({in_flight} in flight)")
    print(
        f"  ... callers waiting each        {appends_unary:,.0f} entries/s "
        f"({args.threads} callers, "
        f"ratio {appends_unary / fetches if fetches else 0:.1f}x)"
    )
    callers = f"{args.threads} callers, {errors} errors"
    print(f"fetch rate, gRPC                 {fetches:,.0f} fetches/s ({callers})")
    if verify_line:
        print(verify_line)
    print(
        f"append / fetch                   {ratio:.1f}x   (target >= {TARGET_APPEND_OVER_FETCH}x)"
    )
    return 0


def _in_session(sessions: Any, read: Callable[[Any], object]) -> object:
    with session_scope(sessions) as session:
        return read(session)


def _wait(address: str) -> None:
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


if __name__ == "__main__":
    sys.exit(main())
