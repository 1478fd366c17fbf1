"""Load test (issue 6, not a test and not in CI): many windows fetching and one department
adapter pushing, for minutes, against `certhub serve --workers 2` on PostgreSQL + Redis.

What runs, all real processes on this machine:

* the hub: ``certhub serve --workers N --redis URL`` over a fresh PostgreSQL database;
* the department: ``certhub adapter run`` (continuous polling) over a SQLite table of
  business registrations; a feeder thread inserts ``--push-rate`` new rows a second, so
  the adapter signs and streams new certificates for the whole run (after a backfill of
  ``--holders`` rows that gives the windows something to fetch);
* ``--clients`` intake clients (threads spread over ``--client-processes`` processes, each
  on its own channel) calling FetchCertificates back to back for those holders.

Reported: calls and errors (target: zero errors: fetch failures, adapter retries and
rejections, hub errors in its log), the resident memory (VmRSS) of every hub process at
the start and the end of the measured window (target: flat), p50/p99 fetch latency, and
the ratio of those to a one-client baseline measured first in the same run.

    PYTHONPATH=.:tests /work/venv/bin/python bench/load_test.py \\
        --db postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        --redis redis://127.0.0.1:6379/0 [--duration 300] [--clients 64]

A fresh database is created next to the one in ``--db`` and dropped afterwards; the hub's
Redis keys live under a fresh prefix and are deleted afterwards.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import func, insert, select
from support.adapters import (
    create_registrations,
    registration,
    registrations,
    sql_source,
    write_config,
)
from support.databases import fresh_postgres_database
from support.load import OK, WINDOW, Load, percentile
from support.processes import start_adapter, stop_process
from support.served import ServedHub, prepare_deployment, serve

from certhub.adapters.outbox import Outbox
from certhub.core.rpc.client import ClientTLS, HubClient
from certhub.hub.demo.world import build_world
from certhub.hub.pki import PkiPaths, issue_client_certificate
from certhub.hub.store.engine import make_engine
from certhub.hub.store.models import Certificate

DEFAULT_DURATION = 300.0
DEFAULT_CLIENTS = 64
# Client threads in one Python process share its GIL; spreading them over a few processes
# keeps the client side from being what the latency measures.
DEFAULT_CLIENT_PROCESSES = 4
# Registrations a district's market regulator adds per second at a busy moment, well above
# Gulou's daily average (a few thousand a year); the adapter streams each one as it appears.
DEFAULT_PUSH_RATE = 20.0
# Holders the windows fetch for (each with one licence from the initial backfill): enough
# that fetches spread over many cache entries and index pages.
DEFAULT_HOLDERS = 2000
# Per-call deadline of the windows (certhub.core.rpc.client DEFAULT_TIMEOUT_SECONDS).
CALL_DEADLINE = 10.0
# One client, sequential fetches, before the load: the unloaded latency the ratios use.
BASELINE_SECONDS = 10.0
# Resident memory of each hub process is sampled this often during the run.
RSS_SAMPLE_SECONDS = 10.0
# After the run the adapter gets this long to push what the feeder added last.
DRAIN_SECONDS = 120.0


def rss_kib(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def hub_rss(served: ServedHub) -> dict[str, int | None]:
    sizes = {f"supervisor {served.process.pid}": rss_kib(served.process.pid)}
    for pid in sorted(served.worker_pids()):
        sizes[f"worker {pid}"] = rss_kib(pid)
    return sizes


def client_process(
    address: str,
    tls_files: tuple[str, str, str],
    fetchers: int,
    holders: int,
    start_at: float,
    duration: float,
    cases: int,
) -> dict[str, Any]:
    """One client process: ``fetchers`` threads fetching from ``start_at`` (time.time) on."""
    world = build_world()
    tls = ClientTLS(ca=Path(tls_files[0]), cert=Path(tls_files[1]), key=Path(tls_files[2]))

    def connect(_principal: str) -> HubClient:
        return HubClient.connect(address, tls)

    load = Load(
        world=world,
        connect=connect,
        fetchers=fetchers,
        pushers=0,
        deadline=CALL_DEADLINE,
        holders=holders,
        first_holder=0,
        cases=cases,
    )
    time.sleep(max(0.0, start_at - time.time()))
    with load:
        time.sleep(duration)
    calls = load.snapshot()
    return {
        "latencies": [c.seconds for c in calls if c.code == OK],
        "errors": collections.Counter(f"{c.code}: {c.message[:80]}" for c in calls if c.code != OK),
    }


class Feeder(threading.Thread):
    """Inserts new registrations into the department's table at a steady rate."""

    def __init__(self, url: str, *, first: int, rate: float) -> None:
        super().__init__(name="feeder", daemon=True)
        self.engine = make_engine(url)
        self.next = first
        self.rate = rate
        self.stop = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        fed = 0
        while not self.stop.wait(0.25):
            due = int((time.monotonic() - started) * self.rate) - fed
            if due <= 0:
                continue
            rows = [registration(self.next + k) for k in range(due)]
            with self.engine.begin() as conn:
                conn.execute(insert(registrations), rows)
            self.next += due
            fed += due


def stored(engine: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Certificate)).scalar_one())


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def baseline(address: str, tls: ClientTLS, holders: int) -> list[float]:
    world = build_world()
    load = Load(
        world=world,
        connect=lambda _p: HubClient.connect(address, tls),
        fetchers=1,
        pushers=0,
        deadline=CALL_DEADLINE,
        holders=holders,
        first_holder=0,
    )
    with load:
        time.sleep(BASELINE_SECONDS)
    return [c.seconds for c in load.snapshot() if c.code == OK]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def run(args: argparse.Namespace) -> int:
    world = build_world()
    amr = world.department_by_name("市场监督")
    prefix = f"load{uuid.uuid4().hex[:10]}"
    with (
        tempfile.TemporaryDirectory(prefix="certhub-load-") as tmp,
        fresh_postgres_database(args.db, prefix="certhub_load") as db_url,
    ):
        root = Path(tmp)
        data = root / "data"
        engine = make_engine(db_url)
        prepare_deployment(data, engine, world.registry_toml())
        source_url = f"sqlite:///{root / 'department.db'}"
        create_registrations(source_url, (registration(n) for n in range(args.holders))).dispose()
        pki = PkiPaths(data)
        cert, key = issue_client_certificate(pki, amr.principal)
        wcert, wkey = issue_client_certificate(pki, WINDOW)
        window_tls = ClientTLS(ca=pki.ca_cert, cert=wcert, key=wkey)

        served = serve(
            data, db_url, "--redis", args.redis, "--cache-prefix", prefix, workers=args.workers
        )
        adapter = None
        feeder = None
        try:
            files = write_config(
                root / "adapter",
                world=world,
                department=amr,
                address=served.address,
                tls=ClientTLS(ca=pki.ca_cert, cert=cert, key=key),
                source=sql_source(source_url),
            )
            adapter_log = root / "adapter.log"
            adapter = start_adapter(files.config, log=adapter_log, once=False)
            print(f"backfilling {args.holders} holders through the adapter ...", flush=True)
            if not wait_until(lambda: stored(engine) >= args.holders, DRAIN_SECONDS):
                print("the initial backfill did not finish", file=sys.stderr)
                return 1

            print(f"baseline: one client for {BASELINE_SECONDS:.0f} s ...", flush=True)
            base = baseline(served.address, window_tls, args.holders)

            per_process = [args.clients // args.client_processes] * args.client_processes
            for n in range(args.clients % args.client_processes):
                per_process[n] += 1
            start_at = time.time() + 5.0  # every client process is up and connected by then
            feeder = Feeder(source_url, first=args.holders, rate=args.push_rate)
            print(
                f"load: {args.clients} clients + 1 adapter ({args.push_rate:g} rows/s) for "
                f"{args.duration:.0f} s against {args.workers} workers ...",
                flush=True,
            )
            samples: list[tuple[float, dict[str, int | None]]] = []
            context = mp.get_context("spawn")
            with context.Pool(args.client_processes) as pool:
                tls_files = (str(pki.ca_cert), str(wcert), str(wkey))
                pending = pool.starmap_async(
                    client_process,
                    [
                        (
                            served.address,
                            tls_files,
                            k,
                            args.holders,
                            start_at,
                            args.duration,
                            args.cases,
                        )
                        for k in per_process
                    ],
                )
                time.sleep(max(0.0, start_at - time.time()))
                feeder.start()
                began = time.monotonic()
                stored_at_start = stored(engine)
                while not pending.ready():
                    samples.append((time.monotonic() - began, hub_rss(served)))
                    pending.wait(RSS_SAMPLE_SECONDS)
                samples.append((time.monotonic() - began, hub_rss(served)))
                results = pending.get()
            feeder.stop.set()
            feeder.join()
            fed = feeder.next
            drained = wait_until(lambda: stored(engine) >= fed, DRAIN_SECONDS)
            pushed = stored(engine) - stored_at_start
            with Outbox(files.outbox) as outbox:
                adapter_status = outbox.status()
            adapter_problems = [
                line
                for line in adapter_log.read_text(errors="replace").splitlines()
                if " WARNING " in line or " ERROR " in line
            ]
            adapter_retries = len(adapter_problems)
            hub_errors = [
                line for line in served.output if " ERROR " in line or "Traceback" in line
            ]
        finally:
            if feeder is not None:
                feeder.stop.set()
            stop_process(adapter)
            served.kill()
            engine.dispose()
            client = redis.Redis.from_url(args.redis)
            keys = list(client.scan_iter(match=f"certhub:{prefix}:*", count=1000))
            if keys:
                client.delete(*keys)
            client.close()

    latencies = [s for r in results for s in r["latencies"]]
    errors: collections.Counter[str] = collections.Counter()
    for r in results:
        errors.update(r["errors"])
    calls = len(latencies) + sum(errors.values())
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    b50, b99 = percentile(base, 0.5), percentile(base, 0.99)

    print()
    print(f"command   {' '.join(sys.argv)}")
    print(f"date      {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores")
    print(
        f"fetches   {calls} in {args.duration:.0f} s ({calls / args.duration:.0f}/s) by "
        f"{args.clients} clients; errors {sum(errors.values())}; case numbers: "
        f"{f'{args.cases} per client, reused' if args.cases else 'a new one every fetch'}"
    )
    for what, count in errors.most_common():
        print(f"          {count} x {what}")
    print(
        f"pushes    {pushed} certificates by the adapter ({pushed / args.duration:.1f}/s); "
        f"drained {drained}; outbox rejected {adapter_status.rejected}, "
        f"pending {adapter_status.depth}; adapter warnings/errors {adapter_retries}"
    )
    for line in adapter_problems[:5]:
        print(f"          {line.rstrip()}")
    print(f"hub log   {len(hub_errors)} ERROR/Traceback lines")
    for line in hub_errors[:5]:
        print(f"          {line.rstrip()}")
    print(f"baseline  one client: p50 {ms(b50)}, p99 {ms(b99)} ({len(base)} fetches)")
    print(
        f"latency   p50 {ms(p50)} ({p50 / b50:.1f}x baseline), p99 {ms(p99)} "
        f"({p99 / b50:.1f}x baseline p50)"
    )
    first, last = samples[0][1], samples[-1][1]
    print("RSS (VmRSS) of each hub process, start -> end (max):")
    for name in first:
        series = [s[name] for _, s in samples if s.get(name) is not None]
        start, end = first[name], last.get(name)
        if start is None or end is None or not series:
            print(f"          {name}: gone during the run")
            continue
        every_minute = [
            f"{sizes[name] / 1024:.0f}"
            for t, sizes in samples
            if sizes.get(name) is not None and int(t) % 60 < RSS_SAMPLE_SECONDS
        ]
        print(f"          {name}: each minute {' '.join(every_minute)} MiB")
        print(
            f"          {name}: {start / 1024:.1f} MiB -> {end / 1024:.1f} MiB "
            f"({end / start:.2f}x; max {max(series) / 1024:.1f} MiB)"
        )
    total_errors = (
        sum(errors.values()) + adapter_status.rejected + adapter_retries + len(hub_errors)
    )
    verdict = "0 (target met)" if total_errors == 0 else f"{total_errors} (target missed)"
    print(f"verdict   errors {verdict}")
    return 0 if total_errors == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--db",
        default=os.environ.get("CERTHUB_TEST_DATABASE_URL"),
        help="PostgreSQL URL; a fresh database is created beside it",
    )
    parser.add_argument("--redis", default=os.environ.get("CERTHUB_TEST_REDIS_URL"))
    parser.add_argument("--duration", type=float, default=DEFAULT_DURATION, help="seconds")
    parser.add_argument("--clients", type=int, default=DEFAULT_CLIENTS)
    parser.add_argument("--client-processes", type=int, default=DEFAULT_CLIENT_PROCESSES)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--push-rate", type=float, default=DEFAULT_PUSH_RATE, help="rows/s")
    parser.add_argument("--holders", type=int, default=DEFAULT_HOLDERS)
    parser.add_argument(
        "--cases",
        type=int,
        default=0,
        help="distinct case numbers per client, reused in turn (default 0: a new case every "
        "fetch; the hub remembers up to 100,000 recorded cases per process, so RSS grows "
        "until that bound when every case is new)",
    )
    args = parser.parse_args()
    if not args.db or not args.redis:
        parser.error("--db and --redis are needed (or CERTHUB_TEST_DATABASE_URL/_REDIS_URL)")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
