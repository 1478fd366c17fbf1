"""`certhub adapter ...` as an operator runs it: keygen into the registry, a run killed with
SIGKILL and restarted, status with rejected items, retry-rejected after a registry fix."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text, update
from support.adapters import (
    REGISTRATION_MAPPING,
    outbox_counts,
    registration,
    registrations,
    sqlite_department,
)
from support.hubs import RunningHub

from certhub.hub.cli.main import main
from certhub.hub.demo.world import DemoDepartment, DemoWorld
from certhub.signing import Algorithm, PrivateKey, parse_envelope

REPO = Path(__file__).resolve().parents[2]
KILL_ROWS = 4000


def _hub_numbers(running_hub: RunningHub) -> list[tuple[str, int]]:
    with running_hub.engine.connect() as conn:
        rows = conn.execute(text("SELECT envelope, version FROM certificates")).all()
    return [(json.loads(parse_envelope(bytes(e)).payload)["number"], v) for e, v in rows]


def _adapter_process(config: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "certhub.hub.cli.main",
            "adapter",
            "run",
            "--once",
            "--config",
            str(config),
        ],
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
    # Finished, but an item waits for the operator: exit 3, not 0.
    assert main(["adapter", "run", "--once", "--no-progress", "--config", config]) == 3
    assert "needs attention" in capsys.readouterr().err
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
    assert f"{config}:1: [department].name: is required" in err


@pytest.mark.slow
def test_continuous_run_stops_cleanly_on_sigterm(
    running_hub: RunningHub, world: DemoWorld, amr: DemoDepartment, tmp_path: Path
) -> None:
    files = sqlite_department(
        running_hub, world, amr, tmp_path, (registration(n) for n in range(20))
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "certhub.hub.cli.main",
            "adapter",
            "run",
            "--config",
            str(files.config),
        ],
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


def _run_once(config: str, *extra: str) -> int:
    return main(["adapter", "run", "--once", "--no-progress", *extra, "--config", config])


def _status(config: str, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(["adapter", "status", "--config", config]) == 0
    return capsys.readouterr().out


def test_after_a_mapping_fix_retry_rejected_resign_signs_the_records_afresh(
    running_hub: RunningHub,
    world: DemoWorld,
    amr: DemoDepartment,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    wrong = REGISTRATION_MAPPING.replace('{ value = "USCC" }', '{ value = "RESIDENT_ID" }')
    assert wrong != REGISTRATION_MAPPING
    files = sqlite_department(
        running_hub,
        world,
        amr,
        tmp_path,
        (registration(n) for n in range(3)),
        mapping=wrong,
    )
    config = str(files.config)
    assert _run_once(config) == 3
    assert "rejected         3" in _status(config, capsys)
    # Resending the stored envelopes repeats the rejection, however often.
    assert main(["adapter", "retry-rejected", "--config", config]) == 0
    assert _run_once(config) == 3
    assert "rejected         3" in _status(config, capsys)

    files.config.write_text(
        files.config.read_text(encoding="utf-8").replace(wrong, REGISTRATION_MAPPING),
        encoding="utf-8",
    )
    capsys.readouterr()
    assert main(["adapter", "retry-rejected", "--resign", "--config", config]) == 0
    assert "3 rejected item(s) signed again from the source" in capsys.readouterr().out
    assert _run_once(config) == 0
    status = _status(config, capsys)
    assert "acknowledged     3" in status
    assert "rejected         0" in status
    with running_hub.engine.connect() as conn:
        envelopes = conn.execute(text("SELECT envelope FROM certificates")).scalars().all()
    holders = [json.loads(parse_envelope(bytes(e)).payload)["holder"] for e in envelopes]
    assert [h["id_type"] for h in holders] == ["USCC"] * 3
    # A second pass signs nothing new: the re-signed records are current.
    capsys.readouterr()
    assert _run_once(config) == 0
    assert "signed 0 certificates" in capsys.readouterr().out


def test_dismissed_and_resolved_problems_leave_status(
    running_hub: RunningHub,
    world: DemoWorld,
    amr: DemoDepartment,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = [registration(n) for n in range(4)]
    good_uscc = rows[1]["uscc"]
    assert isinstance(good_uscc, str)
    rows[1]["uscc"] = good_uscc[:-1] + ("0" if good_uscc[-1] != "0" else "1")
    rows[2]["issue_date"] = None
    rows[3]["licence_type"] = "网络食品交易第三方平台备案凭证"
    new_type = (f"{amr.code}099", "网络食品交易第三方平台备案凭证", "APPROVAL")
    files = sqlite_department(
        running_hub, world, amr, tmp_path, rows, extra_types=[(*new_type, [new_type[1]])]
    )
    config = str(files.config)
    assert _run_once(config) == 3
    status = _status(config, capsys)
    assert "rejected         2" in status
    assert "rows reported    1" in status

    # Fixed at the source: a corrected ID and an issue date, with a new change marker.
    url = f"sqlite:///{tmp_path / 'department.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            update(registrations)
            .where(registrations.c.reg_no == "GL00000001")
            .values(uscc=good_uscc, row_version=101)
        )
        conn.execute(
            update(registrations)
            .where(registrations.c.reg_no == "GL00000002")
            .values(issue_date=dt.date(2021, 3, 1), row_version=102)
        )
    engine.dispose()
    # The unknown type's row is not fixable here: dismiss it.
    (unknown,) = [line for line in status.splitlines() if "GL00000003" in line]
    item = unknown.split()[0].lstrip("#")
    capsys.readouterr()
    assert main(["adapter", "dismiss", item, "--config", config]) == 0
    assert "1 rejected item(s) dismissed" in capsys.readouterr().out

    assert _run_once(config) == 0
    status = _status(config, capsys)
    assert "acknowledged     3" in status  # rows 0, 1 (corrected) and 2
    assert "rejected         0" in status
    assert "dismissed        2" in status  # the dismissed one and the superseded one
    assert "rows reported    0" in status
    assert "rejected by the hub" not in status
    assert "could not map" not in status


def test_run_logs_json_lines_with_the_hubs_keys(
    running_hub: RunningHub,
    world: DemoWorld,
    amr: DemoDepartment,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = [registration(0), registration(1)]
    rows[1]["issue_date"] = None  # a warning line
    files = sqlite_department(running_hub, world, amr, tmp_path, rows)
    code = main(["adapter", "run", "--once", "--log-format", "json", "--config", str(files.config)])
    assert code == 3
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    assert records
    for record in records:
        assert {"ts", "level", "logger", "msg"} <= set(record)
    assert any(r["level"] == "warning" and "issued_on: missing" in r["msg"] for r in records), (
        records
    )
    assert any(r["logger"] == "certhub.adapter.progress" for r in records), records


def test_a_next_key_takes_over_from_its_not_before(
    running_hub: RunningHub,
    world: DemoWorld,
    amr: DemoDepartment,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    takeover = dt.date(2021, 6, 1)  # registration(n) is issued 2021-01-01 + n days
    following = PrivateKey.generate(Algorithm.ED25519)
    block = (
        "[[departments.keys]]\n"
        f'public_key = """\n{following.public_key.to_pem().decode()}"""\n'
        f"not_before = {takeover.isoformat()}\n"
        'status = "active"\n'
    )
    anchor = f'name = "{amr.name}"\n'
    running_hub.apply_registry(world.registry_toml().replace(anchor, anchor + block, 1))
    rows = [registration(n) for n in range(145, 156)]
    rows.append(registration(156, status="注销"))  # pushed, then revoked today
    files = sqlite_department(running_hub, world, amr, tmp_path, rows)
    next_pem = files.config.parent / "next.pem"
    next_pem.write_bytes(following.to_pem())
    text_ = files.config.read_text(encoding="utf-8")
    files.config.write_text(
        text_.replace(
            "\n[hub]\n",
            f'next_signing_key = "{next_pem}"\nnext_key_not_before = {takeover}\n\n[hub]\n',
            1,
        ),
        encoding="utf-8",
    )
    assert _run_once(str(files.config)) == 0
    with running_hub.engine.connect() as conn:
        signed = conn.execute(text("SELECT key_id, envelope FROM certificates")).all()
        (revocation,) = conn.execute(text("SELECT envelope FROM revocations")).scalars()
    by_issue = {
        dt.date.fromisoformat(json.loads(parse_envelope(bytes(e)).payload)["issued_on"]): k
        for k, e in signed
    }
    assert len(by_issue) == len(rows)
    for issued_on, key_id in by_issue.items():
        expected = following if issued_on >= takeover else amr.key
        assert key_id == expected.public_key.key_id, issued_on
    (signature,) = parse_envelope(bytes(revocation)).signatures
    assert signature.keyid == following.public_key.key_id
