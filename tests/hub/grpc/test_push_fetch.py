"""The heart of the product, end to end over real mTLS: push signed certificates, fetch them
for a service item and a case, verify them offline."""

from __future__ import annotations

from support.hubs import RunningHub

from certhub.hub.demo.world import (
    DemoWorld,
    certificate_payload,
    citizen,
    enterprise,
    sign_certificate,
)
from certhub.v1 import ingest_pb2


def test_push_then_fetch_returns_only_what_the_item_needs(
    running_hub: RunningHub, world: DemoWorld
) -> None:
    company = enterprise(7)
    licence = world.type_by_name("营业执照")
    food = world.type_by_name("食品经营许可证")
    amr = world.departments[licence.issuer]
    item = world.item_by_name("公共场所卫生许可（新办）")

    envelopes = [
        sign_certificate(certificate_payload(world, t.code, company, serial=n), [amr.key])
        for n, t in enumerate((licence, food), start=1)
    ]
    with running_hub.client(amr.principal) as department:
        results = [department.push(e, client_ref=f"r{n}") for n, e in enumerate(envelopes)]
    assert [r.outcome for r in results] == [ingest_pb2.ACCEPTED, ingest_pb2.ACCEPTED]
    assert [r.client_ref for r in results] == ["r0", "r1"]

    with running_hub.client("gulou-service-centre") as window:
        fetched = window.fetch(
            id_type="USCC",
            holder_id=company.holder.id,
            service_item=item.code,
            case_number="GL-2026-000001",
        )
    # The item needs a business licence (and an ID card); the food licence must not leave the hub.
    assert [c.payload["type_code"] for c in fetched.certificates] == [licence.code]
    assert fetched.certificates[0].status == "VALID"
    satisfied = {m.name: m.satisfied for m in fetched.materials}
    assert satisfied == {"营业执照": True, "负责人身份证明": False}
    assert fetched.audit_index > results[-1].audit_index


def test_citizen_fetch_by_resident_id(running_hub: RunningHub, world: DemoWorld) -> None:
    person = citizen(3)
    card = world.type_by_name("居民身份证")
    police = world.departments[card.issuer]
    with running_hub.client(police.principal) as department:
        department.push(
            sign_certificate(certificate_payload(world, card.code, person, serial=1), [police.key])
        )
    item = world.item_by_name("食品经营许可（新办）")
    with running_hub.client("gulou-service-centre") as window:
        fetched = window.fetch(
            id_type="RESIDENT_ID",
            holder_id=person.holder.id,
            service_item=item.code,
            case_number="GL-1",
        )
    assert [c.payload["holder"]["id"] for c in fetched.certificates] == [person.holder.id]
