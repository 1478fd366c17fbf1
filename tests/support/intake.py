"""A holder with a business licence in a running hub, and the item a window fetches it for."""

from __future__ import annotations

from dataclasses import dataclass

from certhub.hub.demo.world import DemoWorld, certificate_payload, enterprise, sign_certificate
from support.hubs import RunningHub

WINDOW = "gulou-service-centre"


@dataclass(frozen=True)
class Pushed:
    holder_id: str
    item_code: str
    certificate_id: str
    licence_name: str
    number: str


def push_licence(running: RunningHub, world: DemoWorld, n: int) -> Pushed:
    """Push enterprise ``n``'s business licence; the public-health item needs it."""
    company = enterprise(n)
    licence = world.type_by_name("营业执照")
    department = world.departments[licence.issuer]
    payload = certificate_payload(world, licence.code, company, serial=n)
    with running.client(department.principal) as client:
        client.push(sign_certificate(payload, [department.key]))
    return Pushed(
        holder_id=company.holder.id,
        item_code=world.item_by_name("公共场所卫生许可（新办）").code,
        certificate_id=payload.certificate_id,
        licence_name=licence.name,
        number=payload.number,
    )
