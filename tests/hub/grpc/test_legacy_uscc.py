"""accept_legacy_uscc end to end: only the pilot form gets in, the setting and what it let in
are shown by GetStats, `certhub stats` and the KPI gauges, and `registry apply` warns when a
change strands stored certificates (issue 15, item 12)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import grpc
import pytest
from support.hubs import RunningHub
from support.probes import refused

from certhub.hub.cli.main import main
from certhub.hub.demo.world import DemoHolder, DemoWorld, certificate_payload, sign_certificate
from certhub.hub.domain.holder import Holder, IdType
from certhub.hub.store.engine import make_session_factory, session_scope
from certhub.hub.web.kpis import snapshot
from certhub.v1 import ingest_pb2

PILOT = "91350100M0001TGQXM"  # the documented early Fujian pilot code (check char should be 1)
NOT_PILOT = "91440300192189148B"  # Shenzhen, wrong check char (W): never admitted


def _cli(running_hub: RunningHub, *args: str) -> list[str]:
    return [
        *args,
        *("--data-dir", str(running_hub.config.data_dir)),
        *("--db", running_hub.engine.url.render_as_string(hide_password=False)),
    ]


def _gauges(running_hub: RunningHub) -> dict[str, float]:
    registry = running_hub.hub.registry_source.refresh()
    with session_scope(make_session_factory(running_hub.engine)) as session:
        families = snapshot(session, registry)
    return {f.name: f.samples[0].value for f in families if f.name.endswith("legacy_uscc")} | {
        f.name: f.samples[0].value
        for f in families
        if f.name == "certhub_reform_legacy_uscc_certificates"
    }


@pytest.mark.slow
def test_legacy_codes_shown_and_stranding_warned(
    running_hub: RunningHub,
    world: DemoWorld,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lenient = dataclasses.replace(world, accept_legacy_uscc=True)
    path = tmp_path / "lenient.toml"
    path.write_text(lenient.registry_toml(), encoding="utf-8")
    assert main(_cli(running_hub, "registry", "apply", str(path))) == 0
    assert "accept_legacy_uscc on" in capsys.readouterr().out
    running_hub.hub.registry_source.refresh()

    licence = world.type_by_name("营业执照")
    department = world.departments[licence.issuer]

    def holder(code: str) -> DemoHolder:
        return DemoHolder(holder=Holder(IdType.USCC, code), name="试点公司")

    with running_hub.client(department.principal) as client:
        accepted = client.push(
            sign_certificate(
                certificate_payload(world, licence.code, holder(PILOT), serial=901),
                [department.key],
            )
        )
        assert accepted.outcome == ingest_pb2.ACCEPTED
        error = refused(
            grpc.StatusCode.INVALID_ARGUMENT,
            lambda: client.push(
                sign_certificate(
                    certificate_payload(world, licence.code, holder(NOT_PILOT), serial=902),
                    [department.key],
                )
            ),
        )
    assert "admits only the pre-standard form" in error.message

    # The API (DirectoryService.GetStats), the CLI and the KPIs show the setting and its use.
    with running_hub.client("gulou-service-centre") as window:
        stats = window.stats()
    assert stats.accept_legacy_uscc
    assert stats.legacy_uscc_certificates == 1
    assert main(_cli(running_hub, "stats", "--json")) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["accept_legacy_uscc"], shown["legacy_uscc_certificates"]) == (True, 1)
    assert main(_cli(running_hub, "stats")) == 0
    assert "on; 1 certificates held under one" in capsys.readouterr().out
    assert _gauges(running_hub) == {
        "certhub_reform_accept_legacy_uscc": 1.0,
        "certhub_reform_legacy_uscc_certificates": 1.0,
    }

    # Turning the setting off strands that certificate: --check says so and changes nothing,
    # then it is applied, with the same warning.
    strict = tmp_path / "strict.toml"
    strict.write_text(world.registry_toml(), encoding="utf-8")
    running_hub.hub.registry_source.refresh()
    version = running_hub.hub.registry_source.version
    assert main(_cli(running_hub, "registry", "apply", "--check", str(strict))) == 0
    checked = capsys.readouterr()
    assert f"valid; would be applied as version {version + 1}" in checked.out
    assert "1 stored certificates of 1 holders with a legacy USCC become unreachable" in checked.err
    running_hub.hub.registry_source.refresh()
    assert running_hub.hub.registry_source.version == version
    with running_hub.client("gulou-service-centre") as window:
        assert window.stats().accept_legacy_uscc
    assert main(_cli(running_hub, "registry", "apply", str(strict))) == 0
    err = capsys.readouterr().err
    assert (
        "warning: 1 stored certificates of 1 holders with a legacy USCC become unreachable "
        "(accept_legacy_uscc = false" in err
    )
    running_hub.hub.registry_source.refresh()  # rather than wait for the 1 s reload
    with running_hub.client("gulou-service-centre") as window:
        assert not window.stats().accept_legacy_uscc
    assert _gauges(running_hub)["certhub_reform_accept_legacy_uscc"] == 0.0

    # Dropping a type that stored certificates have: warned with its code and count.
    without = DemoWorld(
        departments=world.departments,
        types={code: t for code, t in world.types.items() if code != licence.code},
        items={
            code: dataclasses.replace(
                item,
                materials=tuple(
                    (m, name, tuple(t for t in types if t != licence.code))
                    for m, name, types in item.materials
                ),
            )
            for code, item in world.items.items()
        },
        principals=world.principals,
    )
    dropped = tmp_path / "dropped.toml"
    dropped.write_text(without.registry_toml(), encoding="utf-8")
    assert main(_cli(running_hub, "registry", "apply", str(dropped))) == 0
    err = capsys.readouterr().err
    assert "stored certificates of types this file no longer lists become unreachable" in err
    assert f"{licence.code} (1)" in err
    # Applying the same file again changes nothing and warns about nothing; --check says so.
    assert main(_cli(running_hub, "registry", "apply", str(dropped))) == 0
    assert "warning" not in capsys.readouterr().err
    assert main(_cli(running_hub, "registry", "apply", "--check", str(dropped))) == 0
    checked = capsys.readouterr()
    assert "valid; would change nothing; still version" in checked.out
    assert "warning" not in checked.err
