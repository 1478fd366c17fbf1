"""The operator's path, as real processes: init -> db upgrade -> registry apply -> serve, then a
department pushes and a window fetches through core.rpc.client; --insecure stays on loopback; the
demo runs (issue 2, item 9)."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from certhub.core.rpc.client import ClientTLS, HubClient
from certhub.hub.cli.main import main
from certhub.hub.demo.world import DemoWorld, certificate_payload, enterprise, sign_certificate
from certhub.hub.pki import PkiPaths
from certhub.v1 import ingest_pb2

REPO = Path(__file__).resolve().parents[2]
# A cold interpreter importing grpc, SQLAlchemy and cryptography takes a second or two on a
# loaded CI machine; ten times that is a hang, not slowness.
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 30.0


def certhub(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "certhub.hub.cli.main", *args],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_for_line(process: subprocess.Popen[str], marker: str) -> str:
    """The first stderr line containing ``marker`` (start-up banners are log lines on stderr,
    stdout stays free of them); fails if the process exits or stalls. A thread keeps reading
    stderr afterwards, so the hub never blocks on a full pipe."""
    assert process.stderr is not None
    stream = process.stderr
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)
        lines.put("")

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    seen: list[str] = []
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        seen.append(line)
        if marker in line:
            return line
        if not line:
            break
    pytest.fail(f"`certhub serve` never printed {marker!r}; exit {process.poll()}: {''.join(seen)}")


@pytest.fixture
def served_data_dir(tmp_path: Path, world: DemoWorld) -> Iterator[tuple[Path, int]]:
    """A data dir set up by the CLI exactly as the README says, and a hub serving it."""
    data = tmp_path / "certhub-data"
    registry = tmp_path / "registry.toml"
    registry.write_text(world.registry_toml(), encoding="utf-8")
    for step in (
        ["init", "--data-dir", str(data), "--registry", str(registry)],
        ["db", "upgrade", "--data-dir", str(data)],
        ["registry", "apply", str(registry), "--data-dir", str(data)],
    ):
        done = certhub(*step)
        assert done.returncode == 0, (step, done.stdout, done.stderr)
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "certhub.hub.cli.main",
            "serve",
            "--data-dir",
            str(data),
            "--address",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
        ],
        cwd=REPO,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = _wait_for_line(process, "certhub serving on")
        assert f"127.0.0.1:{port}" in line
        yield data, port
        process.send_signal(signal.SIGTERM)
        assert process.wait(STOP_TIMEOUT_SECONDS) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _client(data: Path, port: int, principal: str) -> HubClient:
    pki = PkiPaths(data)
    cert, key = pki.client(principal)
    return HubClient.connect(f"127.0.0.1:{port}", ClientTLS(ca=pki.ca_cert, cert=cert, key=key))


@pytest.mark.slow
def test_init_upgrade_apply_serve_push_fetch(
    served_data_dir: tuple[Path, int], world: DemoWorld
) -> None:
    data, port = served_data_dir
    licence = world.type_by_name("营业执照")
    amr = world.departments[licence.issuer]
    company = enterprise(61)
    payload = certificate_payload(world, licence.code, company, serial=1)
    with _client(data, port, amr.principal) as department:
        pushed = department.push(sign_certificate(payload, [amr.key]), client_ref="cli-1")
    assert pushed.outcome == ingest_pb2.ACCEPTED
    with _client(data, port, "gulou-service-centre") as window:
        fetched = window.fetch(
            id_type="USCC",
            holder_id=company.holder.id,
            service_item=world.item_by_name("食品经营许可（新办）").code,
            case_number="CLI-1",
        )
    assert [c.certificate_id for c in fetched.certificates] == [payload.certificate_id]
    # Verified offline against the keys the served hub publishes.
    assert fetched.certificates[0].key_id == amr.key.public_key.key_id
    report = certhub("stats", "--json", "--data-dir", str(data))
    assert report.returncode == 0, report.stderr
    stats = json.loads(report.stdout)
    assert stats["cases_fetched"] == 1
    assert stats["cases_with_certificates"] == 1


@pytest.mark.slow
def test_insecure_on_a_non_loopback_address_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert certhub("db", "upgrade", "--data-dir", str(data)).returncode == 0
    for address in ("0.0.0.0:0", "192.0.2.10:50051"):
        refused = certhub(
            "serve", "--insecure", "--address", address, "--data-dir", str(data), timeout=60
        )
        assert refused.returncode == 1
        assert "loopback" in refused.stderr
        assert address in refused.stderr
        assert "Traceback" not in refused.stderr


@pytest.mark.slow
def test_demo_runs_end_to_end() -> None:
    demo = certhub("demo", timeout=300)
    assert demo.returncode == 0, demo.stderr[-3000:]
    out = demo.stdout
    for marker in (
        "registry   6 departments",
        "(mTLS)",
        "outcomes {'ACCEPTED':",
        "signature verified offline",
        "VALID -> REVOKED",
        "免证率 exemption rate",
        "用证率 usage rate",
    ):
        assert marker in out, f"{marker!r} missing from the demo's output:\n{out}"
    assert "REJECTED" not in out


# `certhub --version` (issue 15, item 10)
def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("certhub ")
