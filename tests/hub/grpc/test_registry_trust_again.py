"""A compromised key is not trusted again by accident: a registry that lists it as active or
retired again, or drops it, is refused unless the operator names the key with
``--trust-again``, and then the change is an entry of the audit log (issue 15, item 12)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from support.hubs import RunningHub

from certhub.hub.audit.entry import Action
from certhub.hub.cli.main import main
from certhub.hub.demo.world import KEYS_VALID_FROM, DemoWorld, certificate_payload, enterprise
from certhub.hub.demo.world import sign_certificate as sign
from certhub.hub.store.models import AuditEntry, RegistryVersion
from certhub.signing import Algorithm, PrivateKey
from certhub.v1 import ingest_pb2


def _versions(running_hub: RunningHub) -> int:
    with Session(running_hub.engine) as session:
        return int(session.execute(select(func.count()).select_from(RegistryVersion)).scalar_one())


def _apply(running_hub: RunningHub, path: Path, *extra: str) -> int:
    return main(
        [
            *("registry", "apply", str(path), *extra),
            *("--data-dir", str(running_hub.config.data_dir)),
            *("--db", running_hub.engine.url.render_as_string(hide_password=False)),
        ]
    )


def test_a_compromised_key_is_trusted_again_only_when_forced_and_audited(
    running_hub: RunningHub, world: DemoWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    amr = world.department_by_name("市场监督管理局")
    licence = world.type_by_name("营业执照").code
    item = world.item_by_name("食品经营许可（新办）").code
    company = enterprise(71)
    old_key = amr.key
    with running_hub.client(amr.principal) as department:
        pushed = department.push(
            sign(certificate_payload(world, licence, company, serial=1), [old_key])
        )
    assert pushed.outcome == ingest_pb2.ACCEPTED

    def status() -> str:
        running_hub.hub.registry_source.refresh()
        with running_hub.client("gulou-service-centre") as window:
            fetched = window.fetch(
                id_type="USCC", holder_id=company.holder.id, service_item=item, case_number="GL-T1"
            )
        (certificate,) = fetched.certificates
        return certificate.status

    assert status() == "VALID"
    new_key = PrivateKey.generate(Algorithm.ED25519)
    rotated_departments = {**world.departments, amr.code: dataclasses.replace(amr, key=new_key)}

    def registry(old_key_status: str | None) -> Path:
        # A retired key needs its last valid day; today keeps what it signed verifying.
        until = dt.date.today() if old_key_status == "retired" else None
        extra = [(old_key, KEYS_VALID_FROM, until, old_key_status)] if old_key_status else []
        text = DemoWorld(
            departments=rotated_departments,
            types=world.types,
            items=world.items,
            principals=world.principals,
            extra_keys={amr.code: extra},
        ).registry_toml()
        path = tmp_path / f"registry-{old_key_status}.toml"
        path.write_text(text, encoding="utf-8")
        return path

    assert _apply(running_hub, registry("compromised")) == 0
    assert status() == "REVOKED"  # what the compromised key signed is distrusted
    capsys.readouterr()
    kid = old_key.public_key.key_id

    for becomes in ("active", "retired", None):  # None: the key dropped from the file
        versions = _versions(running_hub)
        assert _apply(running_hub, registry(becomes)) == 1
        err = capsys.readouterr().err
        assert f"{kid} of {amr.code} would be {becomes or 'removed'}" in err
        assert "--trust-again KEY_ID" in err
        assert _versions(running_hub) == versions  # nothing changed
        assert status() == "REVOKED"

    # Forcing another key's id is not forcing this one.
    assert _apply(running_hub, registry("active"), "--trust-again", new_key.public_key.key_id) == 1
    capsys.readouterr()

    with Session(running_hub.engine) as session:
        size = session.execute(select(func.count()).select_from(AuditEntry)).scalar_one()
    # --check says what would happen, refusal or not, and changes nothing (nor the log).
    versions = _versions(running_hub)
    assert _apply(running_hub, registry("active"), "--check") == 1
    assert "would not be applied" in capsys.readouterr().err
    assert _apply(running_hub, registry("active"), "--check", "--trust-again", kid) == 0
    assert "valid; would be applied as version" in capsys.readouterr().out
    assert _versions(running_hub) == versions
    with Session(running_hub.engine) as session:
        assert session.execute(select(func.count()).select_from(AuditEntry)).scalar_one() == size
    assert status() == "REVOKED"
    assert _apply(running_hub, registry("active"), "--trust-again", kid) == 0
    assert status() == "VALID"
    with Session(running_hub.engine) as session:
        entry = session.execute(
            select(AuditEntry).where(AuditEntry.action == str(Action.REGISTRY))
        ).scalar_one()
    assert entry.idx >= size  # appended after everything before it, in the one sequence
    leaf = json.loads(entry.leaf)
    assert leaf["principal"].startswith("certhub-cli:")
    assert leaf["outcome"] == "ok"
    assert f"compromised key {kid[:16]} trusted again (active, forced)" in leaf["method"]
    # The log still verifies end to end with the entry the CLI appended beside the hub's.
    capsys.readouterr()
    assert (
        main(
            [
                *("audit", "verify", "--data-dir", str(running_hub.config.data_dir)),
                *("--db", running_hub.engine.url.render_as_string(hide_password=False)),
            ]
        )
        == 0
    ), capsys.readouterr()


def test_trusting_again_needs_the_hubs_audit_keys(
    running_hub: RunningHub, world: DemoWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    amr = world.department_by_name("市场监督管理局")
    compromised = DemoWorld(
        departments={
            **world.departments,
            amr.code: dataclasses.replace(amr, key=PrivateKey.generate(Algorithm.ED25519)),
        },
        types=world.types,
        items=world.items,
        principals=world.principals,
        extra_keys={amr.code: [(amr.key, KEYS_VALID_FROM, None, "compromised")]},
    )
    path = tmp_path / "compromised.toml"
    path.write_text(compromised.registry_toml(), encoding="utf-8")
    assert _apply(running_hub, path) == 0
    original = tmp_path / "original.toml"
    original.write_text(world.registry_toml(), encoding="utf-8")
    versions = _versions(running_hub)
    status = main(
        [
            *("registry", "apply", str(original), "--trust-again", amr.key.public_key.key_id),
            *("--data-dir", str(tmp_path / "elsewhere")),
            *("--db", running_hub.engine.url.render_as_string(hide_password=False)),
        ]
    )
    assert status == 1
    err = capsys.readouterr().err
    assert "needs the hub's keys" in err
    assert _versions(running_hub) == versions
    assert not (tmp_path / "elsewhere" / "keys").exists()  # no new keys were made
