"""Adapter backfill: N generated certificates from a `sql` source into a hub on PostgreSQL
(not a test).

One run measures, on the same machine and at the same time:

* the baseline: single-core Ed25519 verify rate of ``cryptography`` over a message the
  size of a real certificate's PAE (the hub verifies one signature per push);
* the end-to-end backfill: ``certhub adapter run --once --streams S`` reading a PostgreSQL
  table of N business registrations (server-side cursor), signing each into its outbox and
  pushing it over S concurrent streams (S connections) to ``certhub serve --workers W``
  (PostgreSQL), which verifies, stores and audits it. Timed from the adapter's start to its
  exit (everything acknowledged). S defaults to W, as the adapter's default does for a
  two-worker hub;
* peak resident memory (VmHWM) of the adapter and of the largest hub process (supervisor or
  worker), and the CPU seconds each side used during the backfill.

Target (issue 11): end-to-end rate >= 0.5x the verify rate; each process < 500 MB.

    CERTHUB_BENCH_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        PYTHONPATH=.:tests .venv/bin/python bench/backfill_bench.py --rows 20000 \\
        --hub-workers 2 [--streams 2] [--thread-cpu]

Two fresh databases are created next to the one in the URL (hub and department) and
dropped afterwards.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import create_engine, text
from support.adapters import create_registrations, registration, sql_source, write_config
from support.databases import fresh_postgres_database
from support.served import ServedHub, established_by_worker

from certhub.adapters.config import load_config
from certhub.adapters.producer import Producer, load_signing_key
from certhub.adapters.pusher import connect
from certhub.adapters.records import SourceRecord
from certhub.adapters.sources import open_source
from certhub.core.rpc.client import ClientTLS
from certhub.hub.demo.world import (
    DemoDepartment,
    DemoWorld,
    build_world,
    certificate_payload,
    enterprise,
    sign_certificate,
)
from certhub.hub.pki import PkiPaths
from certhub.signing import CERTIFICATE_PAYLOAD_TYPE, pae
from certhub.v1 import ingest_pb2, ingest_pb2_grpc

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROWS = 100_000
# Rough size of one certificate payload (JSON with Chinese names and two face fields).
PAYLOAD_BYTES = 900
VERIFY_SECONDS = 3.0
MB = 1024 * 1024
# The hub's RSS is reported at each tenth of the backfill: enough to see a slope.
RSS_POINTS = 10
PY_SPY = Path(sys.executable).with_name("py-spy")  # installed with the dev extras
# Threads that used less than this per certificate (1 us) are left out of the listing.
THREAD_REPORT_SECONDS = 1e-6
# A thread's line in ``py-spy dump``: its native id and the name Python gave it.
THREAD_LINE = re.compile(r'^Thread (\d+) \([^)]*\): "([^"]*)"', re.MULTILINE)


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def verify_rate(seconds: float) -> float:
    """Single-core Ed25519 verifications per second over a certificate-sized message."""
    key = ed25519.Ed25519PrivateKey.generate()
    public = key.public_key()
    message = pae(CERTIFICATE_PAYLOAD_TYPE, b"x" * PAYLOAD_BYTES)
    signature = key.sign(message)
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(500):
            public.verify(signature, message)
        count += 500
    return count / elapsed


def certhub(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "certhub.hub.cli.main", *args],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"certhub {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PeakRss:
    """Polls /proc for the peak RSS (VmHWM, the kernel's own) of a process and of each of its
    children (a hub's workers) until it ends, their CPU time so far (utime + stime), and the
    largest one's current RSS over time (whether memory still grows with the rows, which a
    high-water mark read at the end cannot tell)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kb: dict[int, int] = {}
        self.cpu_ticks: dict[int, int] = {}
        # (monotonic seconds, the largest process's VmRSS in kB), one per poll
        self.series: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(0.2):
            self.sample()

    def pids(self) -> list[int]:
        try:
            children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        except OSError:
            children = []
        return [self.pid, *(int(c) for c in children)]

    def sample(self) -> None:
        largest = 0
        for pid in self.pids():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_kb[pid] = max(self.peak_kb.get(pid, 0), int(line.split()[1]))
                elif line.startswith("VmRSS:"):
                    largest = max(largest, int(line.split()[1]))
            fields = stat.rsplit(")", 1)[1].split()
            self.cpu_ticks[pid] = int(fields[11]) + int(fields[12])  # utime, stime
        self.series.append((time.monotonic(), largest))

    def rss_between(self, start: float, end: float, points: int) -> list[float]:
        """The largest process's RSS in MB at ``points`` evenly spaced moments of
        [start, end] (monotonic seconds): the last sample at or before each."""
        moments = [start + (end - start) * (i + 1) / points for i in range(points)]
        found = []
        for moment in moments:
            before = [kb for at, kb in self.series if at <= moment]
            found.append((before[-1] if before else 0) * 1024 / MB)
        return found

    def stop(self) -> float:
        """The largest peak of the process and its children, in MB."""
        self.sample()
        self._stop.set()
        self._thread.join()
        return max(self.peak_kb.values(), default=0) * 1024 / MB

    def cpu_seconds(self) -> float:
        return sum(self.cpu_ticks.values()) / os.sysconf("SC_CLK_TCK")


class WorkerSpread:
    """Which hub worker process holds each of the adapter's connections (SO_REUSEPORT hands
    a connection to a worker by a hash of its addresses: with as many streams as workers,
    two can land on the same worker). Polled until every stream is connected."""

    def __init__(self, served: ServedHub, streams: int) -> None:
        self._served = served
        self._streams = streams
        self.seen: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(0.2):
            counts = established_by_worker(self._served)
            if sum(counts.values()) > sum(self.seen.values()):
                self.seen = counts
            if sum(self.seen.values()) >= self._streams:
                return

    def stop(self) -> dict[int, int]:
        self._stop.set()
        self._thread.join()
        return self.seen


class ThreadCpu:
    """CPU seconds (utime + stime, /proc/PID/task/TID/stat) each thread of the hub's workers
    used between ``start`` and ``stop``, summed over the workers by thread name: which of the
    event loop, the group committer and grpc's own threads a push's CPU goes to, exactly
    (a sampling profile counts waits too). Python names its threads only for itself, so the
    names come from ``py-spy dump`` at the start; threads it does not name (grpc's C-core
    ones, and any started later) are summed as "unnamed"."""

    def __init__(self, workers: list[int]) -> None:
        self._workers = workers
        self._names: dict[int, str] = {}
        self._start: dict[int, int] = {}

    def start(self) -> None:
        for pid in self._workers:
            dump = subprocess.run(
                [str(PY_SPY), "dump", "--pid", str(pid)], capture_output=True, text=True,
                check=False,
            )  # fmt: skip
            for match in THREAD_LINE.finditer(dump.stdout):
                self._names[int(match.group(1))] = match.group(2)
        self._start = self._ticks()

    def stop(self) -> dict[str, float]:
        by_name: dict[str, float] = {}
        for tid, ticks in self._ticks().items():
            name = self._names.get(tid, "unnamed")
            used = (ticks - self._start.get(tid, 0)) / os.sysconf("SC_CLK_TCK")
            by_name[name] = by_name.get(name, 0.0) + used
        return dict(sorted(by_name.items(), key=lambda kv: -kv[1]))

    def _ticks(self) -> dict[int, int]:
        ticks: dict[int, int] = {}
        for pid in self._workers:
            for task in Path(f"/proc/{pid}/task").glob("*"):
                try:
                    fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                ticks[int(task.name)] = int(fields[11]) + int(fields[12])  # utime, stime
        return ticks


def rows(count: int, type_names: list[str]) -> Iterator[dict[str, object]]:
    for n in range(count):
        yield registration(n, licence_type=type_names[n % len(type_names)])


def run(args: argparse.Namespace, base_url: str, tmp: Path) -> int:
    world = build_world()
    amr = world.department_by_name("市场监督")
    type_names = [t.name for t in world.types.values() if t.issuer == amr.code]
    baseline = verify_rate(VERIFY_SECONDS)
    say(f"baseline: Ed25519 verify, one core: {baseline:,.0f}/s")

    with (
        fresh_postgres_database(base_url, prefix="certhub_bench_hub") as hub_url,
        fresh_postgres_database(base_url, prefix="certhub_bench_dept") as dept_url,
    ):
        started = time.perf_counter()
        create_registrations(dept_url, rows(args.rows, type_names), chunk=10_000).dispose()
        say(f"department table: {args.rows:,} rows in {time.perf_counter() - started:.0f}s")

        data = tmp / "hub"
        registry = tmp / "registry.toml"
        registry.write_text(world.registry_toml(), encoding="utf-8")
        certhub("init", "--data-dir", str(data), "--registry", str(registry))
        certhub("db", "upgrade", "--data-dir", str(data), "--db", hub_url)
        certhub("registry", "apply", str(registry), "--data-dir", str(data), "--db", hub_url)
        port = free_port()
        hub_log = (tmp / "hub.log").open("w")
        hub = subprocess.Popen(
            [sys.executable, "-m", "certhub.hub.cli.main", "serve", "--data-dir", str(data), "--db",
             hub_url, "--address", f"127.0.0.1:{port}", "--workers", str(args.hub_workers)],
            cwd=REPO, env=_env(), stdout=hub_log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        hub_rss = PeakRss(hub.pid)
        try:
            _wait_for_port(port)
            pki = PkiPaths(data)
            cert, key = pki.client(amr.principal)
            files = write_config(
                tmp / "adapter",
                world=world,
                department=amr,
                address=f"127.0.0.1:{port}",
                tls=ClientTLS(ca=pki.ca_cert, cert=cert, key=key),
                source=sql_source(dept_url, batch_size=1000),
            )
            streams = args.streams or args.hub_workers
            say(
                f"backfill: certhub adapter run --once --streams {streams} ({args.rows:,} rows, "
                f"hub --workers {args.hub_workers}) ..."
            )
            hub_rss.sample()
            threads = None
            if args.thread_cpu:
                threads = ThreadCpu([pid for pid in hub_rss.pids() if pid != hub.pid])
                threads.start()
            hub_cpu_start = hub_rss.cpu_seconds()
            started = time.perf_counter()
            backfill_from = time.monotonic()
            adapter = subprocess.Popen(
                [sys.executable, "-m", "certhub.hub.cli.main", "adapter", "run", "--once",
                 "--streams", str(streams), "--config", str(files.config)],
                cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=sys.stderr, text=True,
            )  # fmt: skip
            adapter_rss = PeakRss(adapter.pid)
            spread = WorkerSpread(
                ServedHub(process=hub, address=f"127.0.0.1:{port}", data_dir=data), streams
            )
            spies = [] if args.py_spy is None else [
                _py_spy(args.py_spy / f"{name}.txt", pid)
                for name, pid in (("hub", hub.pid), ("adapter", adapter.pid))
            ]  # fmt: skip
            out, _ = adapter.communicate()
            for spy in spies:
                if spy.poll() is None:  # the hub's: still running; SIGINT makes it write
                    spy.send_signal(signal.SIGINT)
                spy.wait(60)
            elapsed = time.perf_counter() - started
            hub_rss.sample()
            hub_growth = hub_rss.rss_between(backfill_from, time.monotonic(), RSS_POINTS)
            adapter_peak = adapter_rss.stop()
            if adapter.returncode != 0:
                raise SystemExit(f"adapter failed ({adapter.returncode})")
            by_worker = spread.stop()
            adapter_cpu = adapter_rss.cpu_seconds()
            hub_rss.sample()
            hub_cpu_backfill = hub_rss.cpu_seconds() - hub_cpu_start
            by_thread = threads.stop() if threads is not None else {}
            say(f"adapter: {out.strip()}")
            say(f"adapter connections per hub worker (pid: count): {by_worker}")
            # Two ceilings, measured on the same data and hub: what the adapter alone can
            # sign into its outbox, and what the hub alone takes from a bare stream of
            # pre-signed envelopes (no adapter in the way).
            sample = min(args.rows, args.ceiling_rows)
            signing = adapter_signing_rate(files.config, tmp / "signing.outbox.db", sample)
            say(f"adapter alone (read + map + sign + outbox): {signing:,.0f}/s")
            hub_alone = hub_push_rate(world, amr, files.config, sample, streams)
            say(f"hub alone ({streams} bare PushCertificates streams): {hub_alone:,.0f}/s")
            hub_peak = hub_rss.stop()
        finally:
            hub.send_signal(signal.SIGTERM)
            hub.wait(60)
            hub_log.close()
        engine = create_engine(hub_url)
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT count(*) FROM certificates")).scalar_one()
        engine.dispose()

    rate = args.rows / elapsed
    ratio = rate / baseline
    print()
    print(f"rows                      {args.rows:,} (stored in the hub: {stored:,})")
    print(f"Ed25519 verify, one core  {baseline:,.0f}/s")
    print(
        f"backfill end to end       {rate:,.0f}/s in {elapsed:,.1f}s "
        f"({streams} streams, hub --workers {args.hub_workers})"
    )
    print(f"adapter alone             {signing:,.0f}/s  (sign + outbox, {sample:,} rows)")
    print(
        f"hub alone                 {hub_alone:,.0f}/s  ({streams} bare streams, {sample:,} pushes)"
    )
    print(f"adapter conns per worker  {by_worker}  (worker pid: connections)")
    print(
        f"CPU during the backfill   adapter {adapter_cpu:,.1f} s, hub processes "
        f"{hub_cpu_backfill:,.1f} s (over {elapsed:,.1f} s on {os.cpu_count()} cores)"
    )
    print(
        f"CPU per certificate       adapter {adapter_cpu / args.rows * 1e3:.3f} ms, hub "
        f"processes {hub_cpu_backfill / args.rows * 1e3:.3f} ms"
    )
    if by_thread:
        print(
            "hub CPU per certificate   "
            + ", ".join(f"{name} {cpu / args.rows * 1e3:.3f} ms" for name, cpu in by_thread.items()
                        if cpu / args.rows >= THREAD_REPORT_SECONDS)
            + "  (the workers' threads)"
        )  # fmt: skip
    print(f"ratio                     {ratio:.3f}x  (target >= 0.5x: {_met(ratio >= 0.5)})")
    print(
        f"peak RSS adapter          {adapter_peak:,.0f} MB  (< 500 MB: {_met(adapter_peak < 500)})"
    )
    print(f"peak RSS hub              {hub_peak:,.0f} MB  (< 500 MB: {_met(hub_peak < 500)})")
    print(
        f"hub RSS over the backfill {' '.join(f'{mb:,.0f}' for mb in hub_growth)} MB  "
        f"(largest process, at each {100 // RSS_POINTS}% of its time)"
    )
    return 0 if stored == args.rows + sample else 1


def adapter_signing_rate(config: Path, outbox: Path, rows: int) -> float:
    """Rows per second the adapter's producer alone maps, signs and commits to an outbox."""
    loaded = load_config(config)
    loaded = dataclasses.replace(loaded, outbox=dataclasses.replace(loaded.outbox, path=outbox))
    stop = threading.Event()
    source = open_source(loaded.source)
    producer = Producer(
        config=loaded,
        source=_first(source, rows, stop),
        keys=load_signing_key(loaded),
        stop=stop,
    )
    started = time.perf_counter()
    counts = producer.run()
    elapsed = time.perf_counter() - started
    return counts.pushes / elapsed


class _first:  # noqa: N801 -- a Source wrapper, named for what it does
    """The first ``rows`` records of a source (then asks the producer to stop)."""

    def __init__(self, source: Any, rows: int, stop: threading.Event) -> None:
        self._source, self._rows, self._stop = source, rows, stop
        self.description = source.description

    def estimate(self, state: Any) -> int | None:
        return self._rows

    def read(self, state: Any) -> Iterator[Any]:
        seen = 0
        for item in self._source.read(state):
            yield item
            if isinstance(item, SourceRecord):
                seen += 1
                if seen >= self._rows:
                    self._stop.set()
                    return


def hub_push_rate(
    world: DemoWorld, amr: DemoDepartment, config: Path, rows: int, streams: int
) -> float:
    """Pushes per second the hub takes from ``streams`` concurrent bare streams of pre-signed
    envelopes, each on its own connection (the adapter's channels, without the adapter)."""
    licence = world.type_by_name("营业执照").code
    envelopes = [
        sign_certificate(
            certificate_payload(world, licence, enterprise(n), serial=9_000_000 + n), [amr.key]
        )
        for n in range(rows)
    ]
    endpoint = load_config(config).hub
    channels = [connect(endpoint, stream=i) for i in range(streams)]
    accepted = [0] * streams

    def push(index: int) -> None:
        stub = ingest_pb2_grpc.IngestServiceStub(channels[index])
        requests = (
            ingest_pb2.PushRequest(envelope=e, client_ref=str(n))
            for n, e in enumerate(envelopes)
            if n % streams == index
        )
        accepted[index] = sum(
            r.outcome == ingest_pb2.ACCEPTED for r in stub.PushCertificates(requests, timeout=3600)
        )

    threads = [threading.Thread(target=push, args=(i,)) for i in range(streams)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    for channel in channels:
        channel.close()
    if sum(accepted) != rows:
        raise SystemExit(f"hub alone: {sum(accepted)} of {rows} accepted")
    return rows / elapsed


def _py_spy(out: Path, pid: int) -> subprocess.Popen[bytes]:
    """Sample ``pid`` and its children until it exits; collapsed stacks (one line per stack,
    with a count). The children matter: the hub's supervisor only waits, its forked workers
    do the pushes (without --subprocesses the hub's profile held the supervisor alone)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "py-spy"), "record", "--nonblocking", "--threads",
         "--subprocesses", "--format", "raw", "--rate", "50", "--output", str(out),
         "--pid", str(pid)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _wait_for_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit(f"hub did not listen on {port} within {timeout:.0f}s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    parser.add_argument("--hub-workers", type=int, default=1, help="certhub serve --workers")
    parser.add_argument(
        "--streams",
        type=int,
        default=None,
        help="adapter push streams (default: the hub's worker count)",
    )
    parser.add_argument(
        "--ceiling-rows",
        type=int,
        default=5000,
        help="rows for the adapter-alone and hub-alone ceilings (default 5000)",
    )
    parser.add_argument(
        "--py-spy", type=Path, metavar="DIR", help="profile hub and adapter with py-spy into DIR"
    )
    parser.add_argument(
        "--thread-cpu",
        action="store_true",
        help="also print the hub workers' CPU per certificate by thread (names by py-spy dump)",
    )
    args = parser.parse_args()
    base_url = os.environ.get("CERTHUB_BENCH_DATABASE_URL")
    if not base_url:
        raise SystemExit("set CERTHUB_BENCH_DATABASE_URL (PostgreSQL) to run this benchmark")
    with tempfile.TemporaryDirectory(prefix="certhub-backfill-") as tmp:
        return run(args, base_url, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
