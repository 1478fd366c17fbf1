"""RegisterCase, CloseCase and GetStats with a period, over real mTLS: the contract's
shapes, status codes and audit indices, and GetStats equal to the service's figures."""

from __future__ import annotations

import grpc
import pytest
from support.casework import SyncCasework
from support.hubs import RunningHub
from support.intake import WINDOW, push_licence

from certhub.core.rpc.client import HubClientError
from certhub.hub.demo.world import DemoWorld
from certhub.hub.services import stats
from certhub.v1 import directory_pb2, intake_pb2


def _register(number: str, item: str, department: str) -> intake_pb2.RegisterCaseRequest:
    return intake_pb2.RegisterCaseRequest(
        case_number=number,
        service_item_code=item,
        channel=intake_pb2.CASE_CHANNEL_SELF_SERVICE,
        department_code=department,
        window="自助终端 东街口",
    )


def test_a_case_registered_fetched_and_closed_over_grpc(
    running_hub: RunningHub, world: DemoWorld
) -> None:
    pushed = push_licence(running_hub, world, 11)
    department = world.type_by_name("营业执照").issuer
    with running_hub.client(WINDOW) as window:
        first = window.call(
            window.intake.RegisterCase, _register("GR-1", pushed.item_code, department)
        )
        again = window.call(
            window.intake.RegisterCase, _register("GR-1", pushed.item_code, department)
        )
        assert (first.created, again.created) == (True, False)
        assert again.audit_index > first.audit_index
        window.fetch(
            id_type="USCC",
            holder_id=pushed.holder_id,
            service_item=pushed.item_code,
            case_number="GR-1",
        )
        closed = window.call(
            window.intake.CloseCase,
            intake_pb2.CloseCaseRequest(
                case_number="GR-1",
                materials=[
                    intake_pb2.MaterialUse(
                        material_code="M01",
                        source=intake_pb2.MATERIAL_SOURCE_E_CERTIFICATE,
                        certificate_id=pushed.certificate_id,
                    ),
                    intake_pb2.MaterialUse(
                        material_code="M02", source=intake_pb2.MATERIAL_SOURCE_NOT_PROVIDED
                    ),
                ],
            ),
        )
        assert (closed.used_e_certificate, closed.closed) == (True, True)
        request = directory_pb2.GetStatsRequest(
            by=[directory_pb2.STATS_BY_WINDOW, directory_pb2.STATS_BY_MONTH]
        )
        got = window.call(window.directory.GetStats, request)
    expected = SyncCasework(running_hub).period_stats(
        stats.parse_query("", "", ["WINDOW", "MONTH"])
    )
    assert (got.cases_registered, got.cases_closed, got.cases_with_e_certificate) == (1, 1, 1)
    assert got.case_usage_rate == pytest.approx(expected.case_usage_rate) == 1.0
    assert got.until == expected.until.isoformat()
    assert [b.by for b in got.breakdowns] == [
        directory_pb2.STATS_BY_WINDOW,
        directory_pb2.STATS_BY_MONTH,
    ]
    [by_window] = got.breakdowns[0].groups
    assert (by_window.key, by_window.cases_registered) == ("自助终端 东街口", 1)
    assert by_window.exemption_rate == -1.0  # only months carry one
    assert {i.name for i in got.non_exempt_items} == {i.name for i in expected.non_exempt}


@pytest.mark.parametrize(
    ("request_", "code", "field"),
    [
        (
            intake_pb2.RegisterCaseRequest(case_number="GR-2", service_item_code="350102-0001"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "channel",
        ),
        (
            intake_pb2.CloseCaseRequest(case_number="GR-NEVER"),
            grpc.StatusCode.NOT_FOUND,
            None,
        ),
        (
            directory_pb2.GetStatsRequest(since="2026-02-30"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "since",
        ),
        (
            directory_pb2.GetStatsRequest(by=[directory_pb2.STATS_BREAKDOWN_UNSPECIFIED]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "by[0]",
        ),
    ],
)
def test_bad_requests_get_their_status_and_name_the_field(
    running_hub: RunningHub, request_: object, code: grpc.StatusCode, field: str | None
) -> None:
    with running_hub.client(WINDOW) as window:
        method = {
            intake_pb2.RegisterCaseRequest: window.intake.RegisterCase,
            intake_pb2.CloseCaseRequest: window.intake.CloseCase,
            directory_pb2.GetStatsRequest: window.directory.GetStats,
        }[type(request_)]
        with pytest.raises(HubClientError) as raised:
            window.call(method, request_)
    assert raised.value.code == code
    if field is not None:
        assert [v.field for v in raised.value.violations] == [field]
