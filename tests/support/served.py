"""A real `certhub serve` subprocess (supervisor + workers) over a database the test owns."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from sqlalchemy.engine import Engine

from certhub.core.rpc.client import ClientTLS, HubClient
from certhub.hub.pki import PkiPaths, init_hub_secrets, init_pki, issue_client_certificate
from certhub.hub.services.registry_store import apply_registry
from certhub.hub.store import migrate
from certhub.hub.store.engine import make_session_factory, session_scope

REPO = Path(__file__).resolve().parents[2]

# Two workers each import grpc, SQLAlchemy and build a hub: about a second each on an idle
# machine; the shared 2-core test machine can be several times slower.
START_TIMEOUT = 30.0
# gRPC keeps one connection per channel and SO_REUSEPORT hashes each connection to a
# worker: 8 channels on 2 workers all land on one with p = 1/128, which CI met more than
# once. Channels are added until every worker holds one, up to this many (all on one
# worker: p = 2^-31).
MAX_CHANNELS = 32
# Connecting is a TCP and TLS handshake on loopback: well under a second even when the
# shared test machine is busy.
CONNECT_TIMEOUT = 10.0
# The supervisor's (or the one process's) banner once every worker serves.
_SERVING = re.compile(r"certhub serving on (\S+:[1-9]\d*)")


def prepare_deployment(data_dir: Path, engine: Engine, registry_toml: str) -> PkiPaths:
    """What an operator does before `certhub serve`: schema, registry, CA and keys."""
    migrate.upgrade(engine)
    with session_scope(make_session_factory(engine), write=True) as session:
        apply_registry(session, registry_toml, now=dt.datetime.now(dt.UTC))
    paths = init_pki(data_dir)
    init_hub_secrets(data_dir)
    return paths


def with_rate_limit(registry_toml: str, principal: str, *, per_second: float, burst: int) -> str:
    """The registry text with a token bucket added to one principal."""
    line = f'name = "{principal}"\n'
    assert line in registry_toml, f"no principal {principal} in the registry"
    return registry_toml.replace(
        line, f"{line}rate_limit = {{ per_second = {per_second}, burst = {burst} }}\n", 1
    )


@dataclass(frozen=True)
class Deployment:
    """Where a served hub keeps its files and data."""

    data_dir: Path
    db_url: str
    engine: Engine


# Serialises issuing client certificates (see ServedHub.client).
_ISSUING = threading.Lock()


@dataclass
class ServedHub:
    """`certhub serve --workers N` running as a child of the test."""

    process: subprocess.Popen[str]
    address: str
    data_dir: Path
    output: list[str] = field(default_factory=list)

    @property
    def pki(self) -> PkiPaths:
        return PkiPaths(self.data_dir)

    def client(self, principal: str) -> HubClient:
        # Issued once per principal: threads issuing at once rewrote the same key and
        # certificate files under each other, and a client read one's key with the other's
        # certificate ("Failed to create security handshaker", a flaky drain test).
        with _ISSUING:
            cert, key = issue_client_certificate(self.pki, principal)
        return HubClient.connect(self.address, ClientTLS(ca=self.pki.ca_cert, cert=cert, key=key))

    def clients_on_every_worker(self, principal: str, *, at_least: int) -> list[HubClient]:
        """At least ``at_least`` connected clients, more if needed until every worker holds one.

        Connecting makes no call, so it spends no rate-limit token and records no audit entry.
        """
        clients: list[HubClient] = []
        while len(clients) < at_least or (
            len(clients) < MAX_CHANNELS and 0 in established_by_worker(self).values()
        ):
            client = self.client(principal)
            clients.append(client)
            grpc.channel_ready_future(client.channel).result(timeout=CONNECT_TIMEOUT)
        per_worker = established_by_worker(self)
        assert len(per_worker) >= 2, per_worker
        assert all(n > 0 for n in per_worker.values()), per_worker
        return clients

    def worker_pids(self) -> set[int]:
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return {int(p) for p in path.read_text().split()}
        except FileNotFoundError:
            return set()

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM the supervisor and return its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        pids = self.worker_pids()
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def serve(
    data_dir: Path, db_url: str, *extra: str, workers: int = 2, address: str = "127.0.0.1:0"
) -> ServedHub:
    """Start `certhub serve` on ``address`` (default: a free loopback port); returns once every
    worker serves. A fixed address lets a test restart a killed hub where its clients expect it."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "certhub.hub.cli.main",
            "serve",
            "--data-dir",
            str(data_dir),
            "--db",
            db_url,
            "--address",
            address,
            "--workers",
            str(workers),
            *extra,
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    found: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            # The banner is a log line on stderr (JSON by default), not stdout text.
            banner = _SERVING.search(line)
            if banner is not None and not found:
                found.append(banner.group(1))
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(START_TIMEOUT) or not found:
        process.kill()
        process.wait()
        raise AssertionError("certhub serve did not start:\n" + "".join(output))
    return ServedHub(process=process, address=found[0], data_dir=data_dir, output=output)


def wait_for(condition: object, *, timeout: float, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def established_by_worker(served: ServedHub) -> dict[int, int]:
    """Established client connections each worker holds on the hub's port (from /proc)."""
    port = int(served.address.rsplit(":", 1)[1])
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            cols = line.split()
            local_port = int(cols[1].rsplit(":", 1)[1], 16)
            if local_port == port and cols[3] == "01":  # 01 = ESTABLISHED
                inodes.add(cols[9])
    counts: dict[int, int] = {}
    for pid in served.worker_pids():
        fds = Path(f"/proc/{pid}/fd")
        owned = 0
        for fd in fds.iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                owned += 1
        counts[pid] = owned
    return counts
