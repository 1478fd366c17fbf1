"""`certhub adapter ...` as an operator runs it: keygen into the registry, a run killed with
SIGKILL and restarted, status with rejected items, retry-rejected after a registry fix."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from support.adapters import (
    REGISTRATION_MAPPING,
    outbox_counts,
    registration,
    sqlite_department,
)
from support.hubs import RunningHub

from hub.cli.main import main
from hub.demo.world import DemoDepartment, DemoWorld
from signing import PrivateKey, parse_envelope

REPO = Path(__file__).resolve().parents[2]
KILL_ROWS = 4000


def _hub_numbers(running_hub: RunningHub) -> list[tuple[str, int]]:
    with running_hub.engine.connect() as conn:
        rows = conn.execute(text("SELECT envelope, version FROM certificates")).all()
    return [(json.loads(parse_envelope(bytes(e)).payload)["number"], v) for e, v in rows]


def _adapter_process(config: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "hub.cli.main", "adapter", "run", "--once", "--config", str(config)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
def test_sigkill_mid_push_then_restart_loses_nothing_and_duplicates_nothing(
    running_hub: RunningHub, world: DemoWorld, amr: DemoDepartment, tmp_path: Path
) -> None:
    files = sqlite_department(
        running_hub,
        world,
        amr,
        tmp_path,
        (registration(n) for n in range(KILL_ROWS)),
    )
    first = _adapter_process(files.config)
    try:
        deadline = time.monotonic() + 60
        while outbox_counts(files.outbox).get("acked", 0) < KILL_ROWS // 5:
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        first.send_signal(signal.SIGKILL)
    finally:
        first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL
    at_kill = outbox_counts(files.outbox)
    assert at_kill.get("acked", 0) < KILL_ROWS

    second = _adapter_process(files.config)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err.decode()
    assert b"0 pending" in out

    numbers = _hub_numbers(running_hub)
    assert len(numbers) == KILL_ROWS
    assert {n for n, _ in numbers} == {f"GL{n:08d}" for n in range(KILL_ROWS)}
    assert {v for _, v in numbers} == {1}
    assert outbox_counts(files.outbox) == {"acked": KILL_ROWS}


def test_keygen_block_goes_into_the_registry_and_its_key_signs_accepted_certificates(
    running_hub: RunningHub,
    world: DemoWorld,
    amr: DemoDepartment,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    key_file = tmp_path / "keys" / "amr.pem"
    assert main(["adapter", "keygen", "--out", str(key_file)]) == 0
    block = capsys.readouterr().out
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert main(["adapter", "keygen", "--out", str(key_file)]) == 1  # never overwrites
    assert "refusing to overwrite" in capsys.readouterr().err

    anchor = f'name = "{amr.name}"\n'
    registry = world.registry_toml().replace(anchor, anchor + block, 1)
    running_hub.apply_registry(registry)
    new_key = PrivateKey.from_pem(key_file.read_bytes())
    department = DemoDepartment(code=amr.code, name=amr.name, principal=amr.principal, key=new_key)
    files = sqlite_department(
        running_hub,
        world,
        department,
        tmp_path,
        (registration(n) for n in range(3)),
    )
    assert main(["adapter", "run", "--once", "--no-progress", "--config", str(files.config)]) == 0
    assert "3 acknowledged, 0 rejected" in capsys.readouterr().out
    with running_hub.engine.connect() as conn:
        key_ids = set(conn.execute(text("SELECT key_id FROM certificates")).scalars())
    assert key_ids == {new_key.public_key.key_id}


def test_status_lists_rejections_and_retry_rejected_pushes_them_after_the_registry_is_fixed(
    running_hub: RunningHub,
    world: DemoWorld,
    amr: DemoDepartment,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    new_type = (f"{amr.code}099", "网络食品交易第三方平台备案凭证", "APPROVAL")
    files = sqlite_department(
        running_hub,
        world,
        amr,
        tmp_path,
        [registration(0), registration(1, licence_type=new_type[1]), registration(2)],
        mapping=REGISTRATION_MAPPING,
        extra_types=[(*new_type, [new_type[1]])],
    )
    config = str(files.config)
    assert main(["adapter", "run", "--once", "--no-progress", "--config", config]) == 0
    capsys.readouterr()
    assert main(["adapter", "status", "--config", config]) == 0
    status = capsys.readouterr().out
    assert "outbox depth     0" in status
    assert "acknowledged     2" in status
    assert "rejected         1" in status
    assert (
        "business_registration [reg_no=GL00000001]: INVALID_ARGUMENT UNKNOWN_TYPE: "
        f"payload.type_code: unknown certificate type {new_type[0]}"
    ) in status

    running_hub.apply_registry(
        world.registry_toml()
        + "\n[[certificate_types]]\n"
        + f'code = "{new_type[0]}"\nname = "{new_type[1]}"\nkind = "{new_type[2]}"\n'
        + f'issuers = ["{amr.code}"]\n'
    )
    assert main(["adapter", "retry-rejected", "--config", config]) == 0
    assert "1 rejected item(s) queued again" in capsys.readouterr().out
    assert main(["adapter", "run", "--once", "--no-progress", "--config", config]) == 0
    assert "3 acknowledged, 0 rejected" in capsys.readouterr().out
    assert len(_hub_numbers(running_hub)) == 3


def test_config_problems_name_the_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "adapter.toml"
    config.write_text('[department]\ncode = "X"\n', encoding="utf-8")
    assert main(["adapter", "status", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert f"{config}: [department].name: is required" in err


def test_continuous_run_stops_cleanly_on_sigterm(
    running_hub: RunningHub, world: DemoWorld, amr: DemoDepartment, tmp_path: Path
) -> None:
    files = sqlite_department(
        running_hub, world, amr, tmp_path, (registration(n) for n in range(20))
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "hub.cli.main", "adapter", "run", "--config", str(files.config)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while outbox_counts(files.outbox).get("acked", 0) < 20:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err.decode()
    assert b"SIGTERM: stopping" in err
