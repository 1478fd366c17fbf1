"""certhub.hub.grpc.convert: summaries of stored envelopes, parsed once and handed out as copies."""

from __future__ import annotations

from certhub.hub.demo.world import DemoWorld, certificate_payload, enterprise, sign_certificate
from certhub.hub.grpc import convert


def _envelope(world: DemoWorld, *, version: int, fields: dict[str, str] | None = None) -> bytes:
    ctype = world.type_by_name("营业执照")
    payload = certificate_payload(
        world, ctype.code, enterprise(7), serial=7, version=version, fields=fields
    )
    return sign_certificate(payload, [world.departments[ctype.issuer].key])


def test_each_envelope_gets_its_own_summary(world: DemoWorld) -> None:
    # Same certificate id and version, different content: the memo must tell them apart.
    first = _envelope(world, version=1)
    second = _envelope(world, version=1, fields={"经营范围": "茶叶零售"})
    a = convert.summary_from_envelope(first)
    b = convert.summary_from_envelope(second)
    assert (a.certificate_id, a.version) == (b.certificate_id, b.version)
    assert b.fields["经营范围"] == "茶叶零售"
    assert a.fields.get("经营范围") != "茶叶零售"
    # Asked again (now from the memo), each envelope still answers its own summary.
    assert convert.summary_from_envelope(first) == a
    assert convert.summary_from_envelope(second) == b


def test_a_summary_handed_out_can_be_changed_without_touching_the_next(
    world: DemoWorld,
) -> None:
    envelope = _envelope(world, version=3)
    summary = convert.summary_from_envelope(envelope)
    summary.name = "changed by a caller"
    summary.fields["x"] = "y"
    again = convert.summary_from_envelope(envelope)
    assert again.name != "changed by a caller"
    assert "x" not in again.fields
