"""FetchCertificates throughput and latency against an empty gRPC echo server (not a test).

One run, on one machine, with the same client for every target:

* ``echo``: bench/echo_server.py, N processes on one port, mTLS, a reply the size of a
  real fetch answer: the practical limit of grpcio on this machine;
* ``warm``: ``certhub serve --workers N --redis URL`` with every fetched holder cached;
* ``cache off``: ``certhub serve --workers N --no-cache`` (every fetch reads PostgreSQL);
* fetch latency with one sequential client, cache off, at ``--small`` and ``--big``
  certificates stored (does the holder index stay flat as the table grows?);
* with ``--embedded`` instead: the embedded default, ``certhub serve --data-dir`` on SQLite
  with one worker and no Redis, against echo servers of one process.

Certificates are real: each one is a payload signed by its department's key (Ed25519),
inserted in bulk with SQLAlchemy (the columns a push would write), so the hub serves and
a client could verify every envelope. Every fetch is audited (one group-committed write).

    PYTHONPATH=. /work/venv/bin/python bench/fetch_bench.py \
        --db postgresql+psycopg://postgres@127.0.0.1:5432/test \
        --redis redis://127.0.0.1:6379/0 [--scale 711100] [--big 1000000] [--profile DIR]
    PYTHONPATH=. /work/venv/bin/python bench/fetch_bench.py --embedded
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import multiprocessing as mp
import os
import queue
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc
from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url

from certhub.hub.demo.world import (
    DemoWorld,
    build_world,
    certificate_payload,
    enterprise,
    sign_certificate,
)
from certhub.hub.pki import PkiPaths, init_hub_secrets, init_pki, issue_client_certificate
from certhub.hub.services.registry_store import apply_registry
from certhub.hub.store import migrate
from certhub.hub.store.engine import make_engine, make_session_factory, session_scope, sqlite_url
from certhub.hub.store.models import Certificate
from certhub.v1 import common_pb2, intake_pb2

REPO = Path(__file__).resolve().parents[1]

# The issue's figures: 100,000 certificates stored, 32 concurrent callers, 2 workers.
DEFAULT_SCALE = 100_000
DEFAULT_CONCURRENCY = 32
DEFAULT_WORKERS = 2
# Callers are spread over this many client processes (each its own GIL) so that the
# Python client is not what limits the rate; each caller has its own connection.
DEFAULT_CLIENT_PROCESSES = 2
# Holders fetched in the throughput runs: a service centre's working set (the cache test
# is about a warm set, the no-cache run reads the same holders from PostgreSQL).
HOT_HOLDERS = 1_000
# prepare()'s base URL for the embedded default: SQLite in the deployment's data dir.
EMBEDDED = "embedded"
WARMUP_SECONDS = 3.0
DURATION_SECONDS = 10.0
# The scale comparison: single sequential caller over random holders of the whole table.
DEFAULT_SMALL = 10_000
DEFAULT_BIG = 1_000_000
LATENCY_SECONDS = 6.0
# Rows per INSERT batch: big enough to amortise round trips, small enough to stream.
INSERT_BATCH = 5_000
START_TIMEOUT = 120.0
# What the hub logs when its audit self-check ends a full pass (certhub.hub.audit.selfcheck).
# The first worker runs one at start, over the whole log the earlier runs left; later ones
# come every ten minutes. Runs are measured after it: a start-up cost, not a fetch's.
SELFCHECK_PASS = "audit self-check: full pass over"
WINDOW = "gulou-service-centre"
ITEM_NAME = "公共场所卫生许可（新办）"
FETCH_METHOD = "/certhub.v1.IntakeService/FetchCertificates"
ECHO_METHOD = "/bench.Echo/Echo"
# Each holder has a business licence (what the fetched item needs) and a food licence
# (what data minimisation must filter out): two certificates per holder.
CERTS_PER_HOLDER = 2


# --- population -----------------------------------------------------------------------

# The world whose keys sign the rows; filled before the signing pool forks (its workers
# inherit it: department keys are not picklable).
_SIGNER: dict[str, DemoWorld] = {}


def _rows(span: tuple[int, int]) -> list[dict[str, Any]]:
    """Signed certificate rows for holders [start, end)."""
    world = _SIGNER["world"]
    types = [world.type_by_name("营业执照"), world.type_by_name("食品经营许可证")]
    now = dt.datetime.now(dt.UTC)
    rows = []
    for n in range(*span):
        holder = enterprise(n)
        for k, ctype in enumerate(types):
            dept = world.departments[ctype.issuer]
            p = certificate_payload(world, ctype.code, holder, serial=n * CERTS_PER_HOLDER + k)
            envelope = sign_certificate(p, [dept.key])
            rows.append(
                {
                    "certificate_id": p.certificate_id,
                    "version": p.version,
                    "lineage": p.lineage,
                    "is_current": True,
                    "holder_key": p.holder.key(),
                    "type_code": p.type_code,
                    "kind": str(p.kind),
                    "issuer_code": p.issuer_code,
                    "issued_on": p.issued_on,
                    "valid_from": p.valid_from,
                    "valid_until": p.valid_until,
                    "envelope": envelope,
                    "envelope_sha256": hashlib.sha256(envelope).hexdigest(),
                    "key_id": dept.key.public_key.key_id,
                    "attachment_sha256": None,
                    "legacy_uscc": False,
                    "stored_at": now,
                }
            )
    return rows


def _spans(holders: int) -> Iterator[tuple[int, int]]:
    step = INSERT_BATCH // CERTS_PER_HOLDER
    for start in range(0, holders, step):
        yield start, min(holders, start + step)


@dataclass
class Deployment:
    data_dir: Path
    db_url: str
    holders: int


def prepare(base_url: str, world: DemoWorld, certificates: int, data_dir: Path) -> Deployment:
    """A new database with the demo registry and ``certificates`` rows: beside ``base_url``
    on PostgreSQL, or SQLite in ``data_dir`` (the embedded default) for ``EMBEDDED``."""
    _SIGNER["world"] = world
    holders = certificates // CERTS_PER_HOLDER
    name = f"certhub_bench_{holders * CERTS_PER_HOLDER}_{uuid.uuid4().hex[:8]}"
    if base_url == EMBEDDED:
        data_dir.mkdir(parents=True)
        url = sqlite_url(data_dir)
    else:
        admin = create_engine(make_url(base_url), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        url = make_url(base_url).set(database=name).render_as_string(hide_password=False)
    started = time.monotonic()
    with mp.get_context("fork").Pool(os.cpu_count() or 1) as pool:  # before any connection
        engine = make_engine(url)
        migrate.upgrade(engine)
        with session_scope(make_session_factory(engine), write=True) as session:
            apply_registry(session, world.registry_toml(), now=dt.datetime.now(dt.UTC))
        done = 0
        for rows in pool.imap(_rows, _spans(holders)):
            with engine.begin() as conn:
                conn.execute(insert(Certificate), rows)
            done += len(rows)
            if done % 100_000 < INSERT_BATCH:
                _say(f"  {done:,} certificates stored")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE" if base_url == EMBEDDED else "VACUUM ANALYZE certificates"))
    engine.dispose()
    pki = init_pki(data_dir)
    init_hub_secrets(data_dir)
    issue_client_certificate(pki, WINDOW)
    _say(f"  {name}: {done:,} certificates in {time.monotonic() - started:.0f} s")
    return Deployment(data_dir=data_dir, db_url=url, holders=holders)


def drop(base_url: str, db_url: str) -> None:
    name = make_url(db_url).database
    admin = create_engine(make_url(base_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def fetch_requests(world: DemoWorld, holders: Sequence[int]) -> list[bytes]:
    item = world.item_by_name(ITEM_NAME).code
    return [
        intake_pb2.FetchRequest(
            holder=common_pb2.Holder(id_type=common_pb2.USCC, id=enterprise(n).holder.id),
            service_item_code=item,
            case_number=f"BENCH-{n}",
        ).SerializeToString()
        for n in holders
    ]


# --- servers --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A server subprocess; ``marker`` lines in its output (stdout and stderr, both copied to
    ``log``: `certhub serve`'s banner is a log line on stderr) say it serves."""

    def __init__(
        self, argv: list[str], *, marker: str, count: int, log: Path, watch: str | None = None
    ) -> None:
        self._log = log.open("w")
        # Set when a line holding ``watch`` is seen (after the server started or before).
        self.watched = threading.Event()
        # One pipe for both streams: the ready banner may be on either, and the rest of the
        # output is copied to the log so a full pipe never blocks the server.
        self.process = subprocess.Popen(
            argv,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        ready = threading.Event()

        def pump() -> None:  # keeps draining after start-up, so the server never blocks
            seen = 0
            assert self.process.stdout is not None
            for line in self.process.stdout:
                self._log.write(line)
                # Counted, not tested: two workers' banners, written at once to the shared
                # pipe, can arrive as one line (the echo servers that "did not start").
                seen += line.count(marker)
                if seen >= count:
                    ready.set()
                if watch is not None and watch in line:
                    self.watched.set()
            ready.set()

        self._pump = threading.Thread(target=pump, daemon=True)
        self._pump.start()
        if not ready.wait(START_TIMEOUT) or self.process.poll() is not None:
            self.stop()
            # The log goes with the run's temporary directory: its end is the only trace.
            tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-15:])
            raise RuntimeError(f"{argv[:4]} did not start; the end of {log}:\n{tail}")

    def cpu_seconds(self) -> float:
        """User and system CPU of the server and its workers so far."""
        ticks = 0
        for pid in {self.process.pid, *self.workers()}:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            except FileNotFoundError:
                continue
            # utime and stime are the 14th and 15th fields of proc(5); [2] is the 3rd.
            ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def workers(self) -> list[int]:
        """The server's worker processes (its children), or itself when it has none."""
        found = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True, check=False
        ).stdout.split()
        return [int(pid) for pid in found] or [self.process.pid]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._pump.join(timeout=5)
        self._log.close()


def start_hub(dep: Deployment, port: int, workers: int, *extra: str, log: Path) -> Server:
    argv = [sys.executable, "-m", "certhub.hub.cli.main", "serve", "--data-dir", str(dep.data_dir)]
    argv += ["--db", dep.db_url, "--address", f"127.0.0.1:{port}", "--workers", str(workers)]
    server = Server([*argv, *extra], marker="certhub serving on", count=1, log=log,
                    watch=SELFCHECK_PASS)  # fmt: skip
    started = time.monotonic()
    if server.watched.wait(START_TIMEOUT):
        _say(f"  (the hub's start-up audit self-check pass ended {time.monotonic() - started:.1f} s"
             " after it served; measured from here)")  # fmt: skip
    else:
        _say(f"  (no audit self-check pass ended within {START_TIMEOUT:.0f} s: measured anyway)")
    return server


def start_echo(
    dep: Deployment, port: int, workers: int, reply_bytes: int, log: Path, *, kind: str
) -> Server:
    argv = [sys.executable, str(REPO / "bench" / "echo_server.py"), "--data-dir", str(dep.data_dir)]
    argv += ["--address", f"127.0.0.1:{port}", "--workers", str(workers)]
    argv += ["--response-bytes", str(reply_bytes), "--kind", kind]
    return Server(argv, marker="echo serving on", count=workers, log=log)


# --- load -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadSpec:
    address: str
    data_dir: str
    method: str
    requests: list[bytes]
    threads: int
    stride: int
    offset: int
    warmup: float
    duration: float
    shuffle: bool
    # Instead of running for a duration: every request once, spread over the callers.
    one_pass: bool = False


def _caller(spec: LoadSpec, index: int, start: Any, out: list[Any]) -> None:
    pki = PkiPaths(Path(spec.data_dir))
    cert, key = pki.client(WINDOW)
    creds = grpc.ssl_channel_credentials(
        root_certificates=pki.ca_cert.read_bytes(),
        private_key=key.read_bytes(),
        certificate_chain=cert.read_bytes(),
    )
    # Its own connection per caller: channels to one target otherwise share one, and
    # SO_REUSEPORT spreads connections (not calls) over the server's processes.
    channel = grpc.secure_channel(
        spec.address, creds, options=[("grpc.use_local_subchannel_pool", 1)]
    )
    call: Any = channel.unary_unary(spec.method)
    rng = random.Random(spec.offset + index)
    n = len(spec.requests)
    i = spec.offset + index
    latencies: list[float] = []
    size = 0
    total = 0
    grpc.channel_ready_future(channel).result(timeout=30)
    start.wait()  # every caller of every process connected: the clock starts together
    measure_from = time.perf_counter() + spec.warmup
    until = float("inf") if spec.one_pass else measure_from + spec.duration
    while not (spec.one_pass and i >= n):
        request = spec.requests[rng.randrange(n) if spec.shuffle else i % n]
        i += spec.stride
        began = time.perf_counter()
        reply = call(request, timeout=30)
        ended = time.perf_counter()
        total += 1
        if ended > until:
            break
        if began >= measure_from:
            latencies.append(ended - began)
            size = len(reply)
    channel.close()
    out.append((latencies, size, total))


def _client_process(spec: LoadSpec, start: Any, results: Any) -> None:
    out: list[Any] = []
    threads = [
        threading.Thread(target=_caller, args=(spec, t, start, out)) for t in range(spec.threads)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.put(out)


@dataclass(frozen=True)
class Figures:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    calls: int
    reply_bytes: int
    # CPU seconds the server's processes spent per call answered (warm-up included), in us:
    # unlike req/s it hardly depends on what else the shared machine is running.
    server_cpu_us: float | None = None
    # Audit entries per checkpoint (each group commit signs one) over the run: how well the
    # committer batches under this load.
    entries_per_commit: float | None = None


def _log_sizes(db_url: str) -> tuple[int, int]:
    """(audit entries, checkpoints) in the hub's database."""
    engine = create_engine(make_url(db_url))
    try:
        with engine.connect() as conn:
            entries = conn.execute(text("SELECT count(*) FROM audit_entries")).scalar_one()
            checkpoints = conn.execute(text("SELECT count(*) FROM checkpoints")).scalar_one()
    finally:
        engine.dispose()
    return int(entries), int(checkpoints)


def run_load(
    name: str,
    *,
    address: str,
    dep: Deployment,
    method: str,
    requests: list[bytes],
    concurrency: int,
    processes: int,
    warmup: float,
    duration: float,
    shuffle: bool = False,
    one_pass: bool = False,
    server: Server | None = None,
    audited: bool = False,
) -> Figures:
    """``concurrency`` sequential callers in ``processes`` spawned processes."""
    cpu_before = server.cpu_seconds() if server else 0.0
    log_before = _log_sizes(dep.db_url) if audited else None
    ctx = mp.get_context("spawn")  # a fresh interpreter: no gRPC state from this process
    results = ctx.Queue()
    per = [concurrency // processes + (p < concurrency % processes) for p in range(processes)]
    # Spawned interpreters take seconds to import grpc on a busy machine: no caller starts
    # before all are connected.
    start = ctx.Barrier(concurrency)
    procs = []
    offset = 0
    for threads in per:
        spec = LoadSpec(
            address=address,
            data_dir=str(dep.data_dir),
            method=method,
            requests=requests,
            threads=threads,
            stride=concurrency,
            offset=offset,
            warmup=warmup,
            duration=duration,
            shuffle=shuffle,
            one_pass=one_pass,
        )
        offset += threads
        p = ctx.Process(target=_client_process, args=(spec, start, results))
        p.start()
        procs.append(p)
    latencies: list[float] = []
    size = 0
    answered = 0
    for _ in procs:
        try:
            for lat, reply, total in results.get(timeout=warmup + duration + 120):
                latencies += lat
                size = max(size, reply)
                answered += total
        except queue.Empty:
            raise RuntimeError(f"{name}: a client process gave no answer") from None
    for p in procs:
        p.join()
    latencies.sort()
    per_commit = None
    if log_before is not None:
        entries, checkpoints = _log_sizes(dep.db_url)
        per_commit = (entries - log_before[0]) / max(checkpoints - log_before[1], 1)
    figures = Figures(
        name=name,
        rps=len(latencies) / duration,
        p50_ms=1000 * statistics.median(latencies),
        p99_ms=1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        calls=len(latencies),
        reply_bytes=size,
        server_cpu_us=(
            1e6 * (server.cpu_seconds() - cpu_before) / max(answered, 1) if server else None
        ),
        entries_per_commit=per_commit,
    )
    cpu = f", server CPU {figures.server_cpu_us:.0f} us/call" if server else ""
    if per_commit is not None:
        cpu += f", {per_commit:.1f} audit entries/commit"
    _say(
        f"  {name:<28} {figures.rps:8.0f} req/s  p50 {figures.p50_ms:6.2f} ms  "
        f"p99 {figures.p99_ms:6.2f} ms  ({figures.calls} calls, reply {size} B{cpu})"
    )
    return figures


# --- profile --------------------------------------------------------------------------

# Samples per second per process: enough for a stable top-20 over a 13 s run, low enough
# that py-spy's own reading of the stacks stays a few percent of one core.
PROFILE_RATE = 200
# Frames of these packages count as the hub's own code in the inclusive summary.
OWN_CODE = re.compile(r"\((?:[^()]*/)?(hub|cache|signing)/[^()]*\)$")


PY_SPY = Path(sys.executable).with_name("py-spy")  # installed with the dev extras


class Profile:
    """py-spy on every worker of a server while a load runs: one raw (collapsed) stack file
    per worker in ``directory``, summarised by ``summarise``."""

    def __init__(
        self, server: Server, directory: Path, label: str, seconds: float, *, native: bool
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.files: list[Path] = []
        self._spies: list[subprocess.Popen[bytes]] = []
        for pid in server.workers():
            out = directory / f"{label}-{pid}.txt"
            self.files.append(out)
            argv = [str(PY_SPY), "record", "--pid", str(pid), "--format", "raw", "--rate",
                    str(PROFILE_RATE), "--duration", str(int(seconds)), "--nonblocking",
                    "--output", str(out), *(["--native"] if native else [])]  # fmt: skip
            self._spies.append(
                subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )

    def summarise(self, top: int = 25) -> str:
        for spy in self._spies:
            spy.wait(timeout=120)
        own: dict[str, int] = {}
        inclusive: dict[str, int] = {}
        total = 0
        for path in self.files:
            if not path.exists():
                continue
            for line in path.read_text().splitlines():
                stack, _, count_text = line.rpartition(" ")
                if not count_text.isdigit():
                    continue  # a frame name that spans lines (py-spy quotes source text)
                count = int(count_text)
                frames = stack.split(";")
                total += count
                own[frames[-1]] = own.get(frames[-1], 0) + count
                for frame in set(frames):
                    if OWN_CODE.search(frame):
                        inclusive[frame] = inclusive.get(frame, 0) + count
        if not total:
            return "    (no samples: is py-spy allowed to ptrace here?)"
        lines = [f"    {total:,} samples; own time:"]
        for frame, n in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
            lines.append(f"      {100 * n / total:5.1f}%  {frame}")
        lines.append("    inclusive time in the hub's own code:")
        for frame, n in sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]:
            lines.append(f"      {100 * n / total:5.1f}%  {frame}")
        return "\n".join(lines)


def profiled_load(
    server: Server, args: argparse.Namespace, label: str, name: str, **load: Any
) -> Figures:
    if args.profile is None:
        return run_load(name, server=server, **load)
    # Spawned clients take a few seconds to connect: the window covers warm-up and run.
    seconds = load["warmup"] + load["duration"] + 5
    profile = Profile(server, args.profile, label, seconds, native=args.native)
    figures = run_load(name, server=server, **load)
    _say(profile.summarise())
    return figures


# --- the run --------------------------------------------------------------------------


def _say(text: str) -> None:
    print(text, flush=True)


def _hot_load(args: argparse.Namespace, world: DemoWorld, dep: Deployment) -> dict[str, Any]:
    """``run_load``'s arguments for fetches of the hot holders, the same in every mode."""
    hot = random.Random(1).sample(range(dep.holders), min(HOT_HOLDERS, dep.holders))
    return {
        "dep": dep,
        "requests": fetch_requests(world, hot),
        "concurrency": args.concurrency,
        "processes": args.client_processes,
        "warmup": args.warmup,
        "duration": args.duration,
    }


def _warm_fetches(
    hub: Server, args: argparse.Namespace, key: str, label: str, port: int, load: dict[str, Any]
) -> Figures:
    """Every hot holder fetched once before the clock starts (the cache is warm), then the
    measured (and, with --profile, profiled) load."""
    address = f"127.0.0.1:{port}"
    run_load("(warming: each holder once)", address=address, method=FETCH_METHOD,
             one_pass=True, **{**load, "warmup": 0.0})  # fmt: skip
    return profiled_load(hub, args, key, label, address=address, method=FETCH_METHOD,
                         audited=True, **load)  # fmt: skip


def _echoes(
    dep: Deployment, workers: int, out: dict[str, Figures], reply_bytes: int, work: Path,
    load: dict[str, Any],
) -> None:  # fmt: skip
    """The baseline: the faster of an empty synchronous and an empty grpc.aio server, with
    ``workers`` processes, both kept in ``out`` (and the faster as ``out["echo"]``)."""
    for kind in ("sync", "aio"):
        port = _free_port()
        echo = start_echo(dep, port, workers, reply_bytes, work / f"echo-{kind}.log", kind=kind)
        try:
            out[f"echo-{kind}"] = run_load(f"echo (empty {kind} gRPC server, {workers} process"
                                           f"{'es' if workers > 1 else ''})",
                                           address=f"127.0.0.1:{port}", method=ECHO_METHOD,
                                           server=echo, **load)  # fmt: skip
        finally:
            echo.stop()
    out["echo"] = max(out["echo-sync"], out["echo-aio"], key=lambda f: f.rps)


def throughput(args: argparse.Namespace, world: DemoWorld, work: Path) -> dict[str, Figures]:
    _say(f"populating {args.scale:,} certificates")
    dep = prepare(args.db, world, args.scale, work / "main")
    load = _hot_load(args, world, dep)
    out: dict[str, Figures] = {}
    try:
        prefix = f"bench{uuid.uuid4().hex[:8]}"
        port = _free_port()
        hub = start_hub(dep, port, args.workers, "--redis", args.redis, "--cache-prefix", prefix,
                        log=work / "hub-warm.log")  # fmt: skip
        try:
            out["warm"] = _warm_fetches(hub, args, "warm", "fetch, warm cache (Redis)", port, load)
        finally:
            hub.stop()
        port = _free_port()
        hub = start_hub(dep, port, args.workers, "--no-cache", log=work / "hub-nocache.log")
        try:
            out["off"] = profiled_load(hub, args, "off", "fetch, cache off (PostgreSQL)",
                                       address=f"127.0.0.1:{port}", method=FETCH_METHOD,
                                       audited=True, **load)  # fmt: skip
        finally:
            hub.stop()
        _echoes(dep, args.workers, out, out["warm"].reply_bytes, work, load)
    finally:
        if not args.keep:
            drop(args.db, dep.db_url)
    return out


def embedded(args: argparse.Namespace, world: DemoWorld, work: Path) -> dict[str, Figures]:
    """The embedded default: `certhub serve --data-dir` on SQLite, one worker, no Redis (its
    holder cache is the process's memory), against one-process echo servers."""
    _say(f"populating {args.scale:,} certificates (SQLite in the data dir)")
    dep = prepare(EMBEDDED, world, args.scale, work / "embedded")
    load = _hot_load(args, world, dep)
    out: dict[str, Figures] = {}
    port = _free_port()
    hub = start_hub(dep, port, 1, log=work / "hub-embedded.log")
    try:
        out["embedded"] = _warm_fetches(hub, args, "embedded", "fetch, embedded (SQLite, 1)",
                                        port, load)  # fmt: skip
    finally:
        hub.stop()
    _echoes(dep, 1, out, out["embedded"].reply_bytes, work, load)
    return out


def scale_latency(args: argparse.Namespace, world: DemoWorld, work: Path) -> dict[str, Figures]:
    out: dict[str, Figures] = {}
    for label, count in (("small", args.small), ("big", args.big)):
        _say(f"populating {count:,} certificates for the latency comparison")
        dep = prepare(args.db, world, count, work / label)
        try:
            rng = random.Random(2)
            holders = [rng.randrange(dep.holders) for _ in range(5_000)]
            port = _free_port()
            hub = start_hub(dep, port, 1, "--no-cache", log=work / f"hub-{label}.log")
            try:
                out[label] = run_load(f"fetch, 1 caller, {count:,} stored",
                                      address=f"127.0.0.1:{port}", dep=dep, method=FETCH_METHOD,
                                      requests=fetch_requests(world, holders), concurrency=1,
                                      processes=1, warmup=1.0, duration=LATENCY_SECONDS,
                                      shuffle=True)  # fmt: skip
            finally:
                hub.stop()
        finally:
            if not args.keep:
                drop(args.db, dep.db_url)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="PostgreSQL URL; bench databases go beside it")
    parser.add_argument("--redis", help="Redis URL for the warm-cache run")
    parser.add_argument(
        "--embedded", action="store_true", help="only the embedded default (SQLite, 1 worker)"
    )
    parser.add_argument("--scale", type=int, default=DEFAULT_SCALE, help="certificates stored")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    parser.add_argument("--client-processes", type=int, default=DEFAULT_CLIENT_PROCESSES)
    parser.add_argument("--warmup", type=float, default=WARMUP_SECONDS)
    parser.add_argument("--duration", type=float, default=DURATION_SECONDS)
    parser.add_argument("--small", type=int, default=DEFAULT_SMALL)
    parser.add_argument("--big", type=int, default=DEFAULT_BIG)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-scale", action="store_true", help="no 10k-vs-1M comparison")
    parser.add_argument("--keep", action="store_true", help="keep the bench databases")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="py-spy the hub's workers during the warm and cache-off runs "
                             "(raw stacks in DIR, summary printed)")  # fmt: skip
    parser.add_argument("--native", action="store_true",
                        help="with --profile: native frames too (grpc's Cython core, "
                             "protobuf), at a higher sampling cost")  # fmt: skip
    args = parser.parse_args(argv)
    if not args.embedded and not (args.db and args.redis):
        parser.error("--db and --redis are required (or --embedded)")

    world = build_world()
    with tempfile.TemporaryDirectory(prefix="certhub-bench-") as tmp:
        work = Path(tmp)
        figures: dict[str, Figures] = {}
        if args.embedded:
            figures |= embedded(args, world, work)
        elif not args.skip_throughput:
            figures |= throughput(args, world, work)
        if not args.embedded and not args.skip_scale:
            figures |= scale_latency(args, world, work)
    _report(figures, args)
    if args.json:
        args.json.write_text(
            json.dumps({k: asdict(v) for k, v in figures.items()}, indent=2) + "\n"
        )
    return 0


def _report(f: dict[str, Figures], args: argparse.Namespace) -> None:
    _say("")
    workers = 1 if args.embedded else args.workers
    _say(f"cores {os.cpu_count()}, workers {workers}, {args.concurrency} callers in "
         f"{args.client_processes} client processes, {args.scale:,} certificates")  # fmt: skip
    if "echo" in f:
        echo = f["echo"]
        _say(f"  baseline: echo sync {f['echo-sync'].rps:,.0f} req/s (p99 "
             f"{f['echo-sync'].p99_ms:.1f} ms), aio {f['echo-aio'].rps:,.0f} req/s (p99 "
             f"{f['echo-aio'].p99_ms:.1f} ms): the faster is the baseline")  # fmt: skip
        for key, label, rps_target, p99_target in (
            ("warm", "warm cache", 0.8, 2.0),
            ("off", "cache off", 0.5, None),
            ("embedded", "embedded", None, None),
        ):
            if key not in f:
                continue
            x = f[key]
            rps_ratio = x.rps / echo.rps
            p99_ratio = x.p99_ms / echo.p99_ms
            if rps_target is None:  # no target set: the issue asks for the ratio
                line = f"  {label:<11} {rps_ratio:5.2f}x echo req/s"
            else:
                verdict = "met" if rps_ratio >= rps_target else "MISSED"
                line = (
                    f"  {label:<11} {rps_ratio:5.2f}x echo req/s "
                    f"(target >= {rps_target}: {verdict})"
                )
            if p99_target is not None:
                ok = "met" if p99_ratio <= p99_target else "MISSED"
                line += f", p99 {p99_ratio:5.2f}x echo (target <= {p99_target}: {ok})"
            else:
                line += f", p99 {p99_ratio:5.2f}x echo"
            _say(line)
        for key, label in (("echo-sync", "echo sync"), ("echo-aio", "echo aio"),
                           ("warm", "warm cache"), ("off", "cache off"),
                           ("embedded", "embedded")):  # fmt: skip
            if key not in f:
                continue
            cpu = f[key].server_cpu_us
            if cpu is not None:
                _say(f"  server CPU per call, {label:<10} {cpu:7.0f} us")
    if "small" in f and "big" in f:
        ratio = f["big"].p50_ms / f["small"].p50_ms
        ok = "met" if ratio <= 1.2 else "MISSED"
        _say(f"  p50 at {args.big:,} / at {args.small:,}: {ratio:5.2f}x (target <= 1.2: {ok})")


if __name__ == "__main__":
    sys.exit(main())
