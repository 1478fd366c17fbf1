"""Real processes and real faults for the fault tests and the load test: one-shot `certhub`
commands, an adapter run, a PostgreSQL cluster the test owns, and filesystems that fill up
or turn read-only under a running hub.

Everything here starts something outside the test process; every starter has a matching
stop that is safe to call twice, so a fixture's ``finally`` can always clean up.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from certhub.hub.store.models import AuditEntry

REPO = Path(__file__).resolve().parents[2]

# initdb writes a few dozen MB; with --no-sync it takes a few seconds even on the shared
# 2-core machine. A start/stop is a second or two; allow for a loaded machine.
POSTGRES_INIT_TIMEOUT = 120.0
POSTGRES_START_TIMEOUT = 60
# The OS account PostgreSQL's packages create: initdb refuses to run as root.
POSTGRES_OS_USER = "postgres"


def free_port() -> int:
    """A loopback TCP port nobody listens on right now (the caller binds it soon after)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def certhub_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def certhub(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run one `certhub` command to completion (as an operator would) and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "certhub.hub.cli.main", *args],
        cwd=REPO,
        env=certhub_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_adapter(config: Path, *, log: Path, once: bool = True) -> subprocess.Popen[bytes]:
    """`certhub adapter run [--once]` in the background; its output goes to ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "certhub.hub.cli.main",
                "adapter",
                "run",
                *(["--once"] if once else []),
                "--no-progress",
                "--config",
                str(config),
            ],
            cwd=REPO,
            env=certhub_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


# A witness process is up in well under a second; a busy shared machine gets far more.
WITNESS_START_SECONDS = 60.0


def start_witness(
    data_dir: Path, *, name: str, log_vkey: str, port: int
) -> tuple[subprocess.Popen[str], str]:
    """`certhub witness serve` for the log ``log_vkey`` on loopback ``port``, returned once
    its start-up line says it listens; (the process, the witness's vkey)."""
    vkey = certhub("witness", "vkey", "--data-dir", str(data_dir), "--name", name)
    assert vkey.returncode == 0, vkey.stderr
    process = subprocess.Popen(
        [sys.executable, "-m", "certhub.hub.cli.main", "witness", "serve", "--data-dir",
         str(data_dir), "--name", name, "--log", log_vkey, "--listen", f"127.0.0.1:{port}"],
        cwd=REPO, env=certhub_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    deadline = time.monotonic() + WITNESS_START_SECONDS
    printed = []
    # The start-up line is a log line on stderr (stdout stays free of start-up text).
    while not any("add-checkpoint on http://" in line for line in printed):
        line = process.stdout.readline()
        if not line or time.monotonic() > deadline:
            stop_process(process)
            raise AssertionError("the witness did not start: " + "".join(printed))
        printed.append(line)
    # Keep reading, so the witness never blocks on a full pipe (aiohttp logs each request).
    threading.Thread(target=process.stdout.read, daemon=True).start()
    return process, vkey.stdout.strip()


def stop_process(process: subprocess.Popen[bytes] | subprocess.Popen[str] | None) -> None:
    """SIGKILL ``process`` if it still runs, and reap it."""
    if process is not None and process.poll() is None:
        process.kill()
        process.wait()


# --- PostgreSQL -------------------------------------------------------------------------------


def postgres_bindir() -> Path | None:
    """The newest installed PostgreSQL's bin directory with initdb and pg_ctl, if any."""
    candidates = sorted(
        (Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    for bindir in reversed(candidates):
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    found = shutil.which("pg_ctl")
    return Path(found).parent if found and shutil.which("initdb") else None


class PostgresCluster:
    """A PostgreSQL cluster of the test's own on a spare port, so it can be stopped and
    restarted mid-run without touching the machine's shared server.

    As root, initdb and pg_ctl run as the ``postgres`` OS account (initdb refuses root) in a
    temporary directory that account owns; authentication is ``trust`` on loopback only.
    """

    def __init__(self, *, bindir: Path, root: Path) -> None:
        self._bindir = bindir
        self.root = root
        self.data = root / "data"
        self.port = free_port()

    @classmethod
    def create(cls) -> PostgresCluster:
        """initdb a new cluster, or skip the test saying why that is impossible here."""
        bindir = postgres_bindir()
        if bindir is None:
            pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql")
        root = Path(tempfile.mkdtemp(prefix="certhub-pg-"))
        cluster = cls(bindir=bindir, root=root)
        if os.geteuid() == 0:
            try:
                shutil.chown(root, user=POSTGRES_OS_USER, group=None)
            except (LookupError, PermissionError) as e:
                shutil.rmtree(root, ignore_errors=True)
                pytest.skip(
                    f"running as root and cannot hand a directory to {POSTGRES_OS_USER}: {e}"
                )
            root.chmod(0o700)
        result = cluster._run(
            "initdb",
            "-D",
            str(cluster.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",  # the cluster is throw-away; the server itself still fsyncs
            timeout=POSTGRES_INIT_TIMEOUT,
        )
        if result.returncode != 0:
            shutil.rmtree(root, ignore_errors=True)
            pytest.skip(f"initdb failed, cannot run a private PostgreSQL: {result.stderr.strip()}")
        return cluster

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, tool: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        command = [str(self._bindir / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", POSTGRES_OS_USER, "--", *command]
        return subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False, cwd=self.root
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
            "-c max_connections=200 -c fsync=on"
        )
        result = self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "-t",
            str(POSTGRES_START_TIMEOUT),
            "start",
            timeout=POSTGRES_START_TIMEOUT + 10,
        )
        if result.returncode != 0:
            raise AssertionError(
                f"pg_ctl start failed: {result.stdout}{result.stderr}\n{self._log_tail()}"
            )

    def stop(self, mode: str = "fast") -> None:
        """``immediate`` is a crash (no checkpoint; the next start replays the WAL)."""
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-m",
            mode,
            "-w",
            "-t",
            str(POSTGRES_START_TIMEOUT),
            "stop",
            timeout=POSTGRES_START_TIMEOUT + 10,
        )

    def running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data), "status", timeout=30).returncode == 0

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            if self.running():
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return "(no server log)"


@contextlib.contextmanager
def own_postgres() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster.create()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


# --- filesystems ------------------------------------------------------------------------------


class SmallFilesystem:
    """A tmpfs of a fixed size mounted for one test: writes past its size fail with ENOSPC
    (a real full disk, as SQLite sees one), and it can be remounted read-only while files on
    it are open (what the kernel does to a failing disk)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def remount(self, options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(self.path)], check=True)


@contextlib.contextmanager
def small_filesystem(size: str) -> Iterator[SmallFilesystem]:
    """Mount a tmpfs of ``size`` (e.g. ``"8m"``), or skip saying why that is impossible."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root (CAP_SYS_ADMIN)")
    path = Path(tempfile.mkdtemp(prefix="certhub-fs-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        path.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield SmallFilesystem(path)
    finally:
        for attempt in range(50):
            done = subprocess.run(["umount", str(path)], capture_output=True, check=False)
            if done.returncode == 0:
                break
            time.sleep(0.1 * (attempt + 1) if attempt < 5 else 0.5)
        else:
            subprocess.run(["umount", "-l", str(path)], check=False)
        with contextlib.suppress(OSError):
            path.rmdir()


# --- checks after a fault ---------------------------------------------------------------------


def assert_audit_log_sound(engine: Engine, *, data_dir: Path, db_url: str) -> int:
    """The audit log survived: indices 0..n-1 without a gap, and `certhub audit verify`
    (every leaf rehashed, every checkpoint checked) passes. Returns the log's size."""
    with engine.connect() as conn:
        indices = conn.execute(select(AuditEntry.idx).order_by(AuditEntry.idx)).scalars().all()
    assert list(indices) == list(range(len(indices))), "audit indices have gaps or repeats"
    verified = certhub("audit", "verify", "--data-dir", str(data_dir), "--db", db_url, "--quiet")
    assert verified.returncode == 0, (
        f"certhub audit verify failed:\n{verified.stdout}{verified.stderr}"
    )
    assert f"{len(indices):,} entries" in verified.stdout, verified.stdout
    return len(indices)
