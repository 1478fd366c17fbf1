"""The hub's push path in process (not a test): pre-signed pushes through ``Hub.submit_push``.

No gRPC and no adapter: what one hub process spends per push in ``check_push`` (envelope,
payload, signature), the group committer, ``store_pushes`` and the audit append. Each
round submits ``--window`` pushes (the depth a PushCertificates stream keeps in flight),
waits for all of them, and repeats until ``--pushes`` are stored; every push is a new
certificate, so every one is ACCEPTED and written. Reports pushes per second (wall) and
CPU microseconds per push (the whole process, all threads, and the group committer's thread
alone): the hub is CPU-bound on its GIL, so CPU per push is the figure that moves its
ceiling, and it is less disturbed by other load on the machine than the wall rate.

    CERTHUB_BENCH_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        PYTHONPATH=.:tests /work/venv/bin/python bench/push_bench.py [--pushes 3000] [--rounds 3]

Without CERTHUB_BENCH_DATABASE_URL a SQLite file in a temporary directory is used. A fresh
PostgreSQL database is created next to the one in the URL and dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from support.databases import fresh_postgres_database

from certhub.hub.app import Hub, PushOutput
from certhub.hub.demo.world import build_world, certificate_payload, enterprise, sign_certificate
from certhub.hub.pki import init_pki
from certhub.hub.registry import Principal
from certhub.hub.runtime import HubConfig, build_hub, tune_runtime_for_serving
from certhub.hub.services.ingest import PushInput, PushOutcome
from certhub.hub.services.registry_store import apply_registry
from certhub.hub.store import migrate
from certhub.hub.store.engine import make_engine, make_session_factory, session_scope

DATABASE_ENV = "CERTHUB_BENCH_DATABASE_URL"
DEFAULT_PUSHES = 3000
# What certhub.adapters.pusher keeps in flight on one stream, and the committer's MAX_BATCH.
DEFAULT_WINDOW = 256
DEFAULT_ROUNDS = 3
# Pushes run (and discarded) before timing: warms the engine's compiled-statement cache,
# the connection pool and the registry.
WARMUP_PUSHES = 512
# certhub.hub.audit.committer's thread: the one thread every push's write and audit entry pass.
COMMITTER = "audit-committer"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def fresh_database(base_url: str | None, tmp: Path) -> Iterator[str]:
    if not base_url:
        yield f"sqlite:///{tmp / 'certhub.db'}"
        return
    with fresh_postgres_database(base_url, prefix="certhub_bench_push") as url:
        yield url


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of each live thread of this process, by thread name."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    cpu = {}
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            # utime and stime: fields 14 and 15 of proc(5), 12 and 13 after the name.
            cpu[names.get(int(tid), tid)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return cpu


def push_all(hub: Hub, caller: Principal, envelopes: list[bytes], window: int) -> None:
    """On one event loop, as the serving hub runs them: ``window`` pushes in flight."""

    async def pushes() -> None:
        for start in range(0, len(envelopes), window):
            waits: list[Callable[[], Awaitable[PushOutput]]] = [
                hub.submit_push(caller, PushInput(envelope=e, client_ref=str(start + i)))
                for i, e in enumerate(envelopes[start : start + window])
            ]
            for wait in waits:
                if (await wait()).outcome is not PushOutcome.ACCEPTED:
                    raise SystemExit("a push was not ACCEPTED: the benchmark's data is wrong")

    asyncio.run(pushes())


def run(args: argparse.Namespace, db_url: str, data: Path) -> None:
    world = build_world()
    amr = world.department_by_name("市场监督")
    licence = world.type_by_name("营业执照").code
    init_pki(data)
    engine = make_engine(db_url)
    migrate.upgrade(engine)
    with session_scope(make_session_factory(engine), write=True) as session:
        apply_registry(session, world.registry_toml(), now=dt.datetime.now(dt.UTC))
    hub = build_hub(HubConfig(data_dir=data, db_url=db_url), engine)
    if args.gc_tuning:
        tune_runtime_for_serving()  # as `certhub serve` does once built
    try:
        caller = hub.registry().principals[amr.principal]
        total = WARMUP_PUSHES + args.rounds * args.pushes
        envelopes = [
            sign_certificate(
                certificate_payload(world, licence, enterprise(n), serial=9_000_000 + n),
                [amr.key],
            )
            for n in range(total)
        ]
        push_all(hub, caller, envelopes[:WARMUP_PUSHES], args.window)
        rates: list[float] = []
        cpus: list[float] = []
        committers: list[float] = []
        for r in range(args.rounds):
            start = WARMUP_PUSHES + r * args.pushes
            batch = envelopes[start : start + args.pushes]
            threads = thread_cpu()
            wall, cpu = time.perf_counter(), time.process_time()
            push_all(hub, caller, batch, args.window)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            rates.append(len(batch) / wall)
            cpus.append(cpu / len(batch) * 1e6)
            after = thread_cpu()
            committer = after.get(COMMITTER, 0.0) - threads.get(COMMITTER, 0.0)
            committers.append(committer / len(batch) * 1e6)
            print(
                f"round {r + 1}: {rates[-1]:,.0f} pushes/s, {cpus[-1]:,.0f} µs CPU/push "
                f"(committer thread {committers[-1]:,.0f})"
            )
    finally:
        hub.close()
        engine.dispose()
    backend = db_url.split(":", 1)[0]
    print(
        f"{backend}: median {statistics.median(rates):,.0f} pushes/s, "
        f"{statistics.median(cpus):,.0f} µs CPU/push, "
        f"committer thread {statistics.median(committers):,.0f} µs/push "
        f"({args.rounds} x {args.pushes:,} pushes, window {args.window}, "
        f"gc {'tuned' if args.gc_tuning else 'default'}, "
        f"load average {os.getloadavg()[0]:.2f})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pushes", type=int, default=DEFAULT_PUSHES, help="pushes per round")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW)
    parser.add_argument(
        "--no-gc-tuning",
        dest="gc_tuning",
        action="store_false",
        help="leave the collector as Python sets it (serve tunes it: certhub.hub.runtime)",
    )
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="certhub-push-") as tmp,
        fresh_database(os.environ.get(DATABASE_ENV), Path(tmp)) as db_url,
    ):
        run(args, db_url, Path(tmp) / "data")
    return 0


if __name__ == "__main__":
    sys.exit(main())
