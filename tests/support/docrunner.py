"""Run a document's examples as its reader would, so the docs cannot drift from the code.

A Markdown file is read top to bottom. Every fenced ``sh`` block's ``certhub`` commands run
as real processes in one working directory (the reader's shell), and every ``python`` block
runs in one namespace per document (the reader's interpreter), in document order, so an
example may use what an earlier one made. What the runner does differently from a reader,
and only this:

- ``certhub serve`` starts in the background (the reader's second terminal) on a free port
  instead of the documented one (several test runs share a machine); a later ``serve``
  stops the earlier hub first. Every later ``certhub`` command gets ``CERTHUB_ADDRESS`` and
  every later Python block ``localhost:PORT`` for ``localhost:50051``.
- ``--metrics-port N`` becomes a free port for the same reason.
- A shell comment ``# paste the printed [[departments.keys]] block under the department
  with code = "CODE" in FILE`` is done: the previous command's output is inserted there.
- ``export CERTHUB_...=...`` sets the variable for later commands. Other lines that are
  not ``certhub`` commands (``python3 -m venv``, ``export PATH``, ``grpcurl``,
  ``curl``, variable assignments) are not run: the test environment is the installed
  package, and grpcurl examples are sent by tests/test_docs.py.

A block preceded by ``<!-- docs-test: skip REASON -->`` is not run (templates for other
machines: PostgreSQL administration, systemd). A command that exits non-zero fails the
test with its output, unless the block is preceded by
``<!-- docs-test: exit N -->`` and it exits N.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from certhub.core.rpc.client import ClientTLS, HubClient
from certhub.hub.pki import PkiPaths

REPO = Path(__file__).resolve().parents[2]
DOCUMENTED_ADDRESS = "localhost:50051"
# A cold interpreter importing grpc, SQLAlchemy and cryptography takes a second or two on a
# loaded 2-core machine; the demo takes ~15 s. Ten times that is a hang, not slowness.
COMMAND_TIMEOUT_SECONDS = 300.0
SERVE_START_TIMEOUT_SECONDS = 60.0
SERVE_STOP_TIMEOUT_SECONDS = 40.0
# Hubs reload the registry within a second (RegistrySource's interval); ten times that.
REGISTRY_RELOAD_TIMEOUT_SECONDS = 10.0

# The installed `certhub` script beside this interpreter, as the reader runs it.
_SCRIPT = Path(sys.executable).parent / "certhub"
_CERTHUB = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "certhub.hub.cli.main"]
_FENCE = re.compile(r"^```(\w*)\s*$")
_DIRECTIVE = re.compile(r"^<!--\s*docs-test:\s*(\w+)\s*(.*?)\s*-->\s*$")
_PASTE = re.compile(
    r"#\s*paste the printed (\[\[[\w.]+\]\]) block under the department\s+with code = "
    r"\"(\w+)\" in (\S+?)[,.;:]?(?:\s|$)",
    re.S,
)
# The banner `certhub serve` prints once it accepts calls (the log's own "serving on" line
# may name the configured port 0).
_SERVING = re.compile(r"certhub serving on \S+:([1-9]\d*)")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    directive: tuple[str, str] | None  # ("skip", reason) / ("exit", "3")

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file, with the directive just above each."""
    found: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i].strip())
        if opening is None or not opening.group(1):
            i += 1
            continue
        start, body = i, []
        indent = len(lines[i]) - len(lines[i].lstrip())
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][indent:] if lines[i][:indent].isspace() else lines[i])
            i += 1
        above = next((ln.strip() for ln in reversed(lines[:start]) if ln.strip()), "")
        match = _DIRECTIVE.match(above)
        directive = (match.group(1), match.group(2)) if match else None
        found.append(Block(path, start + 1, opening.group(1), "\n".join(body) + "\n", directive))
        i += 1
    return found


def shell_steps(text: str) -> list[str | list[str]]:
    """A shell block's steps: a ``certhub`` command's argv, or a comment line (as str)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    steps: list[str | list[str]] = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            # Consecutive comment lines are one comment: a sentence may wrap.
            if steps and isinstance(steps[-1], str):
                steps[-1] += " " + stripped.lstrip("# ")
            else:
                steps.append(stripped)
            continue
        try:
            words = shlex.split(stripped, comments=True)
        except ValueError:
            continue  # not a simple command (a loop, a here-document): not ours to run
        if words and words[0] in ("certhub", ".venv/bin/certhub"):
            steps.append(words[1:])
        elif len(words) == 2 and words[0] == "export" and words[1].startswith("CERTHUB_"):
            steps.append(["export", *words[1].split("=", 1)])
        comment = line.partition("  #")[2]
        if comment:
            steps.append("#" + comment)
    return steps


@dataclass
class DocSession:
    """One reader: a working directory, a shell environment and a Python namespace."""

    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    namespace: dict[str, Any] = field(default_factory=dict)
    hub: subprocess.Popen[str] | None = None  # the background `certhub serve`
    port: int | None = None
    last_output: str = ""
    pasted_key: str | None = None  # a key pasted into a registry, not yet seen served
    ran: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, workdir: Path) -> DocSession:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CERTHUB_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        # `certhub` in a Python example's subprocess is this interpreter's.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        return cls(workdir=workdir, env=env)

    def run(self, block: Block) -> None:
        if block.directive is not None and block.directive[0] == "skip":
            return
        expected_exit = 0
        if block.directive is not None and block.directive[0] == "exit":
            expected_exit = int(block.directive[1])
        if block.lang in ("sh", "bash", "console"):
            for step in shell_steps(block.text):
                if isinstance(step, str):
                    self._comment(step, block)
                else:
                    self._command(step, block, expected_exit)
        elif block.lang == "python":
            self._python(block)

    def close(self) -> None:
        self._stop_hub()

    # --- shell ---------------------------------------------------------------------------

    def _comment(self, comment: str, block: Block) -> None:
        paste = _PASTE.search(comment)
        if paste is None:
            return
        _header, code, file = paste.groups()
        target = self.workdir / file
        lines = target.read_text(encoding="utf-8").splitlines()
        at = next((n for n, line in enumerate(lines) if line.strip() == f'code = "{code}"'), None)
        assert at is not None, f"{block.where}: no department with code {code} in {file}"
        # After the department's own keys, before the next [[...]] table of another kind.
        end = at + 1
        while end < len(lines) and not (
            lines[end].lstrip().startswith("[[") and "departments.keys" not in lines[end]
        ):
            end += 1
        printed = [ln for ln in self.last_output.splitlines() if not ln.startswith("#")]
        key_id = re.search(r"key ([0-9a-f]{64})", self.last_output)
        if key_id:
            self.pasted_key = key_id.group(1)
        lines[end:end] = ["", *printed, ""]
        target.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.ran.append(f"(pasted into {file})")

    def _command(self, argv: list[str], block: Block, expected_exit: int) -> None:
        if argv and argv[0] == "export":
            self.env[argv[1]] = argv[2] if len(argv) > 2 else ""
            return
        if argv and argv[0] == "serve":
            self._serve(argv, block)
            return
        shown = "certhub " + shlex.join(argv)
        self.ran.append(shown)
        done = subprocess.run(
            [*_CERTHUB, *argv],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_SECONDS,
            check=False,
        )
        self.last_output = done.stdout
        if done.returncode != expected_exit:
            pytest.fail(
                f"{block.where}: `{shown}` exited {done.returncode} (expected {expected_exit})"
                f"\n--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}"
            )
        if argv[:2] == ["registry", "apply"] and self.pasted_key and self.port is not None:
            # The reader's next step comes after the documented "running hubs load the new
            # registry within a second"; wait until this hub publishes the pasted key.
            self._wait_for_key(self.pasted_key, _data_dir(argv, self.workdir), block)
            self.pasted_key = None

    def _wait_for_key(self, key_id: str, data_dir: Path, block: Block) -> None:
        pki = PkiPaths(data_dir)
        [principal, *_] = sorted(p.stem for p in pki.clients_directory.glob("*.crt"))
        cert, key = pki.client(principal)
        tls = ClientTLS(ca=pki.ca_cert, cert=cert, key=key)
        deadline = time.monotonic() + REGISTRY_RELOAD_TIMEOUT_SECONDS
        with HubClient.connect(f"localhost:{self.port}", tls) as client:
            while time.monotonic() < deadline:
                if key_id in client.issuer_keys(refresh=True):
                    return
                time.sleep(0.1)  # polling the served directory; bounded by the deadline
        pytest.fail(f"{block.where}: the hub never published key {key_id}")

    def _serve(self, argv: list[str], block: Block) -> None:
        self._stop_hub()
        argv = list(argv)
        for option in ("--address", "--metrics-port"):
            if option in argv:
                at = argv.index(option)
                del argv[at : at + 2]
        argv += ["--address", "127.0.0.1:0"]
        if any(a.startswith("--metrics") for a in block.text.split()):
            argv += ["--metrics-port", "0"]
        self.ran.append("certhub " + shlex.join(argv))
        # Into a file, not a pipe: a hub logs a line per call, and a full pipe would block it.
        log = self.workdir.parent / f"serve-{len(self.ran)}.log"
        with log.open("w") as out:
            process = subprocess.Popen(
                [*_CERTHUB, *argv],
                cwd=self.workdir,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
            )
        self.hub = process
        self.port = _wait_for_port(process, log, block)
        self.env["CERTHUB_ADDRESS"] = f"127.0.0.1:{self.port}"

    def _stop_hub(self) -> None:
        process, self.hub = self.hub, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(SERVE_STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    # --- python --------------------------------------------------------------------------

    def _python(self, block: Block) -> None:
        source = block.text
        if self.port is not None:
            source = source.replace(DOCUMENTED_ADDRESS, f"localhost:{self.port}")
        self.ran.append(f"python block {block.where}")
        with _chdir(self.workdir), _environ(self.env):
            code = compile(source, block.where, "exec")
            exec(code, self.namespace)  # the document's own example, run as its reader would


def _data_dir(argv: list[str], workdir: Path) -> Path:
    if "--data-dir" in argv:
        return workdir / argv[argv.index("--data-dir") + 1]
    return workdir / "certhub-data"


def _wait_for_port(process: subprocess.Popen[str], log: Path, block: Block) -> int:
    deadline = time.monotonic() + SERVE_START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        serving = _SERVING.search(log.read_text(encoding="utf-8", errors="replace"))
        if serving:
            return int(serving.group(1))
        if process.poll() is not None:
            break
        time.sleep(0.1)  # polling a file the hub writes; the loop's bound is the deadline
    pytest.fail(f"{block.where}: `certhub serve` never said where it serves:\n{log.read_text()}")


@contextlib.contextmanager
def _chdir(path: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


@contextlib.contextmanager
def _environ(env: dict[str, str]) -> Iterator[None]:
    before = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(before)


def run_document(path: Path, workdir: Path) -> DocSession:
    """Run every block of ``path`` in ``workdir``; returns the session (already closed)."""
    session = DocSession.start(workdir)
    try:
        for block in blocks(path):
            session.run(block)
    finally:
        session.close()
    return session
