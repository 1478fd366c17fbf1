"""A revocation's rules, given what is stored of the certificate it revokes: its issuer
revokes it, not before it was issued, with a key of its own."""

from __future__ import annotations

import datetime as dt

import pytest

from certhub.hub.demo.world import DemoWorld, certificate_payload, enterprise, sign_revocation
from certhub.hub.errors import HubError
from certhub.hub.registry import Registry, parse_registry
from certhub.hub.services.ingest.rules import (
    CheckedRevocation,
    RevokeInput,
    check_revocation_of,
    check_revoke,
)

ISSUED_ON = dt.date(2026, 3, 10)
JUNE = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def _revocation(
    world: DemoWorld, registry: Registry, *, revoked_at: dt.datetime, foreign_key: bool = False
) -> tuple[CheckedRevocation, str]:
    licence = world.type_by_name("营业执照")
    department = world.departments[licence.issuer]
    other = next(d for d in world.departments.values() if d.key != department.key)
    payload = certificate_payload(world, licence.code, enterprise(5), serial=5)
    key = other.key if foreign_key else department.key
    checked = check_revoke(
        registry.principals[department.principal],
        RevokeInput(envelope=sign_revocation(payload.certificate_id, key, revoked_at=revoked_at)),
    )
    return checked, payload.issuer_code


@pytest.mark.parametrize(
    ("revoked_at", "foreign_key", "reason"),
    [
        (JUNE, False, None),
        # a UTC timestamp the evening before a China-time issue date: within the slack
        (dt.datetime(2026, 3, 9, 20, tzinfo=dt.UTC), False, None),
        (dt.datetime(2026, 3, 8, tzinfo=dt.UTC), False, "REVOKED_BEFORE_ISSUE"),
        (JUNE, True, "BAD_SIGNATURE"),
    ],
)
def test_revocation_rules(
    world: DemoWorld, revoked_at: dt.datetime, foreign_key: bool, reason: str | None
) -> None:
    registry = parse_registry(world.registry_toml())
    checked, issuer = _revocation(world, registry, revoked_at=revoked_at, foreign_key=foreign_key)
    caller = next(p for p in registry.principals.values() if p.department_code == issuer)
    if reason is None:
        check_revocation_of(registry, caller, checked, issuer=issuer, issued_on=ISSUED_ON)
        return
    with pytest.raises(HubError) as refused:
        check_revocation_of(registry, caller, checked, issuer=issuer, issued_on=ISSUED_ON)
    assert refused.value.reason == reason


def test_only_the_issuer_revokes(world: DemoWorld) -> None:
    registry = parse_registry(world.registry_toml())
    checked, issuer = _revocation(
        world, registry, revoked_at=dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    )
    stranger = next(
        p for p in registry.principals.values() if p.department_code not in (None, issuer)
    )
    with pytest.raises(HubError) as refused:
        check_revocation_of(registry, stranger, checked, issuer=issuer, issued_on=ISSUED_ON)
    assert refused.value.reason == "FOREIGN_CERTIFICATE"
