"""The registry as the operator keeps it: an invalid file changes nothing and names the line; an
applied file takes effect in the running hub without a restart (issue 2, item 6)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import grpc
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from support.hubs import RunningHub
from support.probes import assert_audited_refusal, refused, snapshot

from certhub.core.rpc.client import HubClientError
from certhub.hub.cli.main import main
from certhub.hub.demo.world import (
    KEYS_VALID_FROM,
    DemoWorld,
    certificate_payload,
    enterprise,
    sign_certificate,
)
from certhub.hub.services.registry_store import RELOAD_INTERVAL_SECONDS
from certhub.hub.store.models import RegistryVersion
from certhub.signing import Algorithm, PrivateKey
from certhub.v1 import ingest_pb2


def _versions(running_hub: RunningHub) -> int:
    with Session(running_hub.engine) as session:
        return int(session.execute(select(func.count()).select_from(RegistryVersion)).scalar_one())


def _cli_data_options(running_hub: RunningHub) -> list[str]:
    return [
        "--data-dir",
        str(running_hub.config.data_dir),
        "--db",
        running_hub.engine.url.render_as_string(hide_password=False),
    ]


def test_invalid_registry_file_changes_nothing_and_names_the_line(
    running_hub: RunningHub, world: DemoWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = world.registry_toml().splitlines()
    # Break one principal's role; everything else in the file stays valid.
    broken_at = next(n for n, line in enumerate(lines) if line == 'role = "AUDITOR"')
    lines[broken_at] = 'role = "SUPERUSER"'
    bad = tmp_path / "registry.toml"
    bad.write_text("\n".join(lines), encoding="utf-8")
    versions, digest = _versions(running_hub), running_hub.hub.registry().digest

    status = main(["registry", "apply", str(bad), *_cli_data_options(running_hub)])

    err = capsys.readouterr().err
    assert status == 1
    assert "nothing changed" in err
    assert f":{broken_at + 1}" in err, err
    assert "SUPERUSER" in err
    assert _versions(running_hub) == versions
    assert running_hub.hub.registry_source.refresh().digest == digest
    # The auditor is still an auditor.
    assert running_hub.hub.registry().principals["gulou-audit-office"].role.name == "AUDITOR"


def test_valid_registry_file_applies_through_the_cli(
    running_hub: RunningHub, world: DemoWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = world.registry_toml().replace(
        'name = "wenquan-street-office"', 'name = "wenquan-street-office-2"'
    )
    path = tmp_path / "registry.toml"
    path.write_text(text, encoding="utf-8")
    versions = _versions(running_hub)
    assert main(["registry", "apply", str(path), *_cli_data_options(running_hub)]) == 0
    assert "applied as version" in capsys.readouterr().out
    assert _versions(running_hub) == versions + 1
    principals = running_hub.hub.registry_source.refresh().principals
    assert "wenquan-street-office-2" in principals
    assert "wenquan-street-office" not in principals
    with running_hub.client("wenquan-street-office") as removed:
        error = refused(grpc.StatusCode.UNAUTHENTICATED, removed.stats)
    assert_audited_refusal(running_hub.engine, error, principal="wenquan-street-office")


def test_key_marked_compromised_stops_verifying_new_pushes(
    running_hub: RunningHub, world: DemoWorld
) -> None:
    amr = world.department_by_name("市场监督管理局")
    licence = world.type_by_name("营业执照").code
    old_key = amr.key
    first = certificate_payload(world, licence, enterprise(51), serial=1)
    second = certificate_payload(world, licence, enterprise(52), serial=2)
    with running_hub.client(amr.principal) as department:
        assert department.push(sign_certificate(first, [old_key])).outcome == ingest_pb2.ACCEPTED

    # The department rotates: a new active key, the old one marked compromised.
    new_key = PrivateKey.generate(Algorithm.ED25519)
    rotated = DemoWorld(
        departments={**world.departments, amr.code: dataclasses.replace(amr, key=new_key)},
        types=world.types,
        items=world.items,
        principals=world.principals,
        extra_keys={amr.code: [(old_key, KEYS_VALID_FROM, None, "compromised")]},
    )
    running_hub.apply_registry(rotated.registry_toml())

    before = snapshot(running_hub.engine)
    with running_hub.client(amr.principal) as department:
        error = refused(
            grpc.StatusCode.INVALID_ARGUMENT,
            lambda: department.push(sign_certificate(second, [old_key])),
        )
        assert error.reason == "BAD_SIGNATURE"
        assert "compromised" in error.message
        assert snapshot(running_hub.engine) == before
        assert_audited_refusal(running_hub.engine, error, principal=amr.principal)
        accepted = department.push(sign_certificate(second, [new_key]))
    assert accepted.outcome == ingest_pb2.ACCEPTED
    with running_hub.client("gulou-service-centre") as window:
        keys = window.issuer_keys()
    assert keys[old_key.public_key.key_id].status.name == "COMPROMISED"


@pytest.mark.slow
def test_cli_applied_registry_reaches_the_running_hub_within_the_reload_interval(
    running_hub: RunningHub, world: DemoWorld, tmp_path: Path
) -> None:
    """No refresh() here: the serving hub must notice the new version by itself."""
    amr = world.department_by_name("市场监督管理局")
    licence = world.type_by_name("营业执照").code
    rotated = DemoWorld(
        departments={
            **world.departments,
            amr.code: dataclasses.replace(amr, key=PrivateKey.generate(Algorithm.ED25519)),
        },
        types=world.types,
        items=world.items,
        principals=world.principals,
        extra_keys={amr.code: [(amr.key, KEYS_VALID_FROM, None, "compromised")]},
    )
    path = tmp_path / "registry.toml"
    path.write_text(rotated.registry_toml(), encoding="utf-8")
    assert main(["registry", "apply", str(path), *_cli_data_options(running_hub)]) == 0
    applied = time.monotonic()
    refused_after, reason = None, ""
    with running_hub.client(amr.principal) as department:
        for serial in range(1, 1000):
            payload = certificate_payload(world, licence, enterprise(serial), serial=serial)
            try:
                department.push(sign_certificate(payload, [amr.key]))
            except HubClientError as error:
                refused_after, reason = time.monotonic() - applied, error.reason
                break
            if time.monotonic() - applied > 3 * RELOAD_INTERVAL_SECONDS + 2:
                break
            time.sleep(RELOAD_INTERVAL_SECONDS / 10)
    assert refused_after is not None, "the compromised key still verifies"
    assert reason == "BAD_SIGNATURE"
    assert refused_after <= RELOAD_INTERVAL_SECONDS + 1
