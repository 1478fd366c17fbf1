"""One damaged certificate row does not take a holder's other certificates down (issue 12,
build item 6): its certificate is served as UNUSABLE with the problem named, satisfies no
material, and is counted; the others are served VALID. The row is damaged in the real
SQLite or PostgreSQL database under a running hub, and read through real mTLS."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import update
from support.hubs import RunningHub
from support.intake import WINDOW

from certhub.hub.demo.world import DemoWorld, certificate_payload, enterprise, sign_certificate
from certhub.hub.observability.metrics import metrics
from certhub.hub.store.engine import session_scope
from certhub.hub.store.models import Certificate

ITEM = "食品经营许可（变更）"  # M01 营业执照, M02 食品经营许可证: both from market regulation


def push_two(running: RunningHub, world: DemoWorld, n: int) -> tuple[str, str, bytes]:
    """Enterprise ``n``'s business licence and food licence; (licence id, food id, food
    envelope)."""
    company = enterprise(n)
    ids, envelopes = [], []
    for name in ("营业执照", "食品经营许可证"):
        kind = world.type_by_name(name)
        department = world.departments[kind.issuer]
        payload = certificate_payload(world, kind.code, company, serial=n)
        envelope = sign_certificate(payload, [department.key])
        with running.client(department.principal) as client:
            client.push(envelope)
        ids.append(payload.certificate_id)
        envelopes.append(envelope)
    return ids[0], ids[1], envelopes[1]


def damage(running: RunningHub, certificate_id: str, envelope: bytes, *, digest: bool) -> None:
    """Overwrite the stored envelope (and, if ``digest``, its recorded SHA-256 too)."""
    values: dict[str, object] = {"envelope": envelope}
    if digest:
        values["envelope_sha256"] = hashlib.sha256(envelope).hexdigest()
    with session_scope(running.hub.sessions, write=True) as session:
        session.execute(
            update(Certificate).where(Certificate.certificate_id == certificate_id).values(values)
        )


@pytest.mark.parametrize(
    ("damaged", "problem"),
    [
        ("garbled", "no longer has the SHA-256 recorded when it was pushed"),
        ("unparsable", "is not readable"),
        ("another-certificate", "names another certificate or version than its row"),
    ],
)
def test_a_damaged_row_is_served_unusable_and_the_rest_valid(
    running_hub: RunningHub, world: DemoWorld, damaged: str, problem: str
) -> None:
    licence_id, food_id, food_envelope = push_two(running_hub, world, 31)
    holder = enterprise(31).holder.id
    if damaged == "garbled":
        stored = bytearray(food_envelope)
        stored[40] ^= 0x01
        damage(running_hub, licence_id, bytes(stored), digest=False)
    elif damaged == "unparsable":
        damage(running_hub, licence_id, b'{"payloadType": "appl', digest=True)
    else:
        damage(running_hub, licence_id, food_envelope, digest=True)
    before = metrics().unusable_certificates._value.get()
    item = world.item_by_name(ITEM).code
    with running_hub.client(WINDOW) as client:
        fetched = client.fetch(
            id_type="USCC", holder_id=holder, service_item=item, case_number="GL-UNUSABLE-1"
        )
        got = client.get(
            licence_id, id_type="USCC", holder_id=holder, service_item=item,
            case_number="GL-UNUSABLE-1",
        )  # fmt: skip
    records = {c.record.summary.certificate_id: c.record for c in fetched.certificates}
    assert set(records) == {licence_id, food_id}
    unusable = records[licence_id]
    assert unusable.status == 6  # UNUSABLE
    assert problem in unusable.problem
    assert unusable.summary.version == 1
    assert records[food_id].status == 1  # VALID
    assert records[food_id].problem == ""
    materials = {m.code: m for m in fetched.materials}
    assert not materials["M01"].satisfied
    assert list(materials["M02"].certificate_ids) == [food_id]
    assert got.record.status == 6
    assert problem in got.record.problem
    # The fetch's read and the get's read each found it.
    assert metrics().unusable_certificates._value.get() >= before + 2
