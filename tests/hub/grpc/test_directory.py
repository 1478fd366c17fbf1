"""DirectoryService over mTLS: keys for offline verification, types, service items and the KPIs
computed from the data (issue 2, item 7)."""

from __future__ import annotations

import json

import grpc
import pytest
from support.hubs import RunningHub
from support.probes import (
    assert_audited_refusal,
    audit_rows,
    audit_size,
    refused,
    snapshot,
    violation_fields,
)

from certhub.hub.demo.world import (
    DemoWorld,
    certificate_payload,
    enterprise,
    sign_certificate,
    sign_revocation,
)
from certhub.signing import PublicKey
from certhub.v1 import common_pb2, directory_pb2

# Any authenticated principal may read the directory; an auditor is the least privileged.
READER = "gulou-audit-office"
WINDOW = "gulou-service-centre"


def test_list_issuer_keys_all_and_filtered(running_hub: RunningHub, world: DemoWorld) -> None:
    with running_hub.client(READER) as client:
        every = client.call(client.directory.ListIssuerKeys, directory_pb2.ListIssuerKeysRequest())
        amr = world.department_by_name("市场监督管理局")
        one = client.call(
            client.directory.ListIssuerKeys,
            directory_pb2.ListIssuerKeysRequest(department_code=amr.code),
        )
        error = refused(
            grpc.StatusCode.NOT_FOUND,
            lambda: client.call(
                client.directory.ListIssuerKeys,
                directory_pb2.ListIssuerKeysRequest(department_code="91350102MA00000000"),
            ),
        )
    assert {k.department_code for k in every.keys} == set(world.departments)
    assert {k.key_id for k in every.keys} == {
        d.key.public_key.key_id for d in world.departments.values()
    }
    [key] = one.keys
    assert key.department_code == amr.code
    assert key.department_name == amr.name
    assert key.key_id == amr.key.public_key.key_id
    assert key.status == directory_pb2.KEY_ACTIVE
    assert key.not_before == "2020-01-01"
    assert key.not_after == ""
    # The PEM is the key itself: what offline verifiers trust.
    assert PublicKey.from_pem(key.public_key_pem.encode()).key_id == key.key_id
    assert error.reason == "UNKNOWN_DEPARTMENT"
    assert "91350102MA00000000" in error.message


def test_list_certificate_types_by_kind(running_hub: RunningHub, world: DemoWorld) -> None:
    with running_hub.client(READER) as client:

        def codes(kind: int) -> set[str]:
            request = directory_pb2.ListCertificateTypesRequest(kind=kind)  # type: ignore[arg-type]
            response = client.call(client.directory.ListCertificateTypes, request)
            return {t.code for t in response.types}

        every = codes(common_pb2.CERTIFICATE_KIND_UNSPECIFIED)
        licences = codes(common_pb2.LICENCE)
        approvals = codes(common_pb2.APPROVAL)
    assert every == set(world.types)
    assert licences == {c for c, t in world.types.items() if str(t.kind) == "LICENCE"}
    assert approvals == {c for c, t in world.types.items() if str(t.kind) == "APPROVAL"}
    assert licences
    assert approvals
    assert not licences & approvals


def test_get_service_item_exempt_and_paper_only(running_hub: RunningHub, world: DemoWorld) -> None:
    exempt = world.item_by_name("食品经营许可（新办）")
    paper = world.item_by_name("建筑工程施工许可")
    with running_hub.client(READER) as client:

        def item(code: str) -> directory_pb2.ServiceItem:
            response: directory_pb2.ServiceItem = client.call(
                client.directory.GetServiceItem, directory_pb2.GetServiceItemRequest(code=code)
            )
            return response

        a, b = item(exempt.code), item(paper.code)
        error = refused(grpc.StatusCode.NOT_FOUND, lambda: item("350102-9999"))
    assert a.exempt
    assert a.name == exempt.name
    assert [(m.code, m.name, tuple(m.type_codes)) for m in a.materials] == list(exempt.materials)
    assert not b.exempt
    paper_only = [m.name for m in b.materials if not m.type_codes]
    assert paper_only == ["建设工程规划许可证", "施工合同"]
    assert error.reason == "UNKNOWN_SERVICE_ITEM"
    assert "350102-9999" in error.message


def test_directory_refusals_are_audited_without_raw_ids(running_hub: RunningHub) -> None:
    """Each DirectoryService refusal is a refusal like any other: audited (action
    ``refused``, the RPC as method) within the refusal budget, storing nothing else. A
    resident ID typed as a service-item code reaches the log only as its marker."""
    resident_id = "350102199001011234"
    start = audit_size(running_hub.engine)  # the next entry's index (the log counts from 0)
    before = snapshot(running_hub.engine)
    with running_hub.client(READER) as client:
        d = client.directory
        asked = [
            (
                "GetServiceItem",
                "UNKNOWN_SERVICE_ITEM",
                refused(
                    grpc.StatusCode.NOT_FOUND,
                    lambda: client.call(
                        d.GetServiceItem, directory_pb2.GetServiceItemRequest(code=resident_id)
                    ),
                ),
            ),
            (
                "ListIssuerKeys",
                "UNKNOWN_DEPARTMENT",
                refused(
                    grpc.StatusCode.NOT_FOUND,
                    lambda: client.call(
                        d.ListIssuerKeys,
                        directory_pb2.ListIssuerKeysRequest(department_code=resident_id),
                    ),
                ),
            ),
            (
                "ListCertificateTypes",
                "UNKNOWN_KIND",
                refused(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    lambda: client.call(
                        d.ListCertificateTypes,
                        directory_pb2.ListCertificateTypesRequest(kind=7),  # type: ignore[arg-type]
                    ),
                ),
            ),
            (
                "GetStats",
                "BAD_STATS_QUERY",
                refused(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    lambda: client.call(
                        d.GetStats, directory_pb2.GetStatsRequest(since=resident_id)
                    ),
                ),
            ),
        ]
    assert snapshot(running_hub.engine) == before
    rows = []
    for rpc, reason, error in asked:
        assert error.reason == reason
        row = assert_audited_refusal(running_hub.engine, error, principal=READER)
        assert row.action == "refused"
        assert row.leaf["method"] == f"/certhub.v1.DirectoryService/{rpc}"
        rows.append(row)
    assert violation_fields(asked[2][2]) == ["kind"]
    assert "7" in asked[2][2].message
    assert violation_fields(asked[3][2]) == ["since"]
    # The code asked for is kept, as its marker: "someone typed a resident ID here".
    assert rows[0].leaf["service_item"] == "[resident-id]"
    assert [r.idx for r in audit_rows(running_hub.engine, since=start)] == [r.idx for r in rows]
    for row in audit_rows(running_hub.engine, since=start):
        assert resident_id not in json.dumps(row.leaf, ensure_ascii=False)


def test_get_stats_is_computed_from_the_data(running_hub: RunningHub, world: DemoWorld) -> None:
    licence_type = world.type_by_name("营业执照")
    amr = world.departments[licence_type.issuer]
    naming = world.type_by_name("企业名称自主申报告知书")  # an APPROVAL of the same department
    served, unserved, revoked = enterprise(41), enterprise(42), enterprise(43)
    licence = certificate_payload(world, licence_type.code, served, serial=1)
    approval = certificate_payload(world, naming.code, served, serial=2)
    gone = certificate_payload(world, licence_type.code, revoked, serial=3)
    with running_hub.client(amr.principal) as department:
        for p in (licence, approval, gone):
            department.push(sign_certificate(p, [amr.key]))
        department.revoke(sign_revocation(gone.certificate_id, amr.key))
    item = world.item_by_name("食品经营许可（新办）").code
    fetches = [
        (served, "CASE-A"),  # a valid business licence: served by an e-certificate
        (unserved, "CASE-B"),  # nothing stored: paper
        (served, "CASE-A"),  # the same case again counts once
        (revoked, "CASE-C"),  # only a revoked licence: serves nothing
        (unserved, "CASE-B"),
    ]
    with running_hub.client(WINDOW) as window:
        for holder, case in fetches:
            window.fetch(
                id_type="USCC", holder_id=holder.holder.id, service_item=item, case_number=case
            )
        stats = window.stats()
    items = list(world.items.values())
    exempt = sum(1 for i in items if all(types for _c, _n, types in i.materials))
    assert stats.service_items == len(items)
    assert stats.exempt_service_items == exempt
    assert stats.exemption_rate == pytest.approx(exempt / len(items))
    assert 0 < exempt < len(items)
    assert stats.cases_fetched == 3
    assert stats.cases_with_certificates == 1
    assert stats.usage_rate == pytest.approx(1 / 3)
    assert {c.key: c.count for c in stats.certificates_by_kind} == {"LICENCE": 2, "APPROVAL": 1}
    assert stats.certificates_total == 3
    [by_department] = stats.certificates_by_department
    assert (by_department.key, by_department.label, by_department.count) == (amr.code, amr.name, 3)
    kinds = {c.key: c.count for c in stats.types_by_kind}
    assert kinds == {
        k: sum(1 for t in world.types.values() if str(t.kind) == k) for k in ("LICENCE", "APPROVAL")
    }
