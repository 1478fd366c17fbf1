"""The observability interceptor over real mTLS: request ids in trailing metadata (generated or
echoed, on answers and on errors, rich details kept), request/latency/push metrics."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from prometheus_client import REGISTRY
from support.hubs import RunningHub
from support.intake import WINDOW, push_licence

from certhub.core.rpc.client import InvalidArgumentError
from certhub.hub.demo.world import DemoWorld, certificate_payload, enterprise, sign_certificate
from certhub.hub.observability.calls import REQUEST_ID_HEADER
from certhub.v1 import common_pb2, directory_pb2, intake_pb2

INTAKE = "certhub.v1.IntakeService"


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _fetch_request(holder_id: str, item: str, case: str) -> intake_pb2.FetchRequest:
    return intake_pb2.FetchRequest(
        holder=common_pb2.Holder(id_type=common_pb2.USCC, id=holder_id),
        service_item_code=item,
        case_number=case,
    )


def test_request_id_is_generated_or_echoed_in_trailing_metadata(
    running_hub: RunningHub, world: DemoWorld
) -> None:
    pushed = push_licence(running_hub, world, 31)
    request = _fetch_request(pushed.holder_id, pushed.item_code, "GL-RID-1")
    with running_hub.client(WINDOW) as window:
        stub = window.intake
        _, call = stub.FetchCertificates.with_call(request, timeout=10)
        generated = dict(call.trailing_metadata())[REQUEST_ID_HEADER]
        _, call = stub.FetchCertificates.with_call(
            request, timeout=10, metadata=[(REQUEST_ID_HEADER, "lb-7f3a.42")]
        )
        echoed = dict(call.trailing_metadata())[REQUEST_ID_HEADER]
        # Not a token (spaces, newline-free but too free-form): replaced, never echoed.
        _, call = stub.FetchCertificates.with_call(
            request, timeout=10, metadata=[(REQUEST_ID_HEADER, "drop table; --")]
        )
        replaced = dict(call.trailing_metadata())[REQUEST_ID_HEADER]
    assert len(generated) == 16
    assert int(generated, 16) >= 0
    assert echoed == "lb-7f3a.42"
    assert replaced != "drop table; --"
    assert len(replaced) == 16


def test_error_answers_carry_the_request_id_and_keep_their_rich_details(
    running_hub: RunningHub,
) -> None:
    with running_hub.client(WINDOW) as window, pytest.raises(grpc.RpcError) as caught:
        window.intake.FetchCertificates(
            _fetch_request("91350100M000100Y4", "no-such-item", "GL-ERR"),
            timeout=10,
            metadata=[(REQUEST_ID_HEADER, "err-1")],
        )
    error = caught.value
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert dict(error.trailing_metadata())[REQUEST_ID_HEADER] == "err-1"
    status = rpc_status.from_call(error)
    assert status is not None
    kinds = {d.type_url.rsplit(".", 1)[-1] for d in status.details}
    assert {"ErrorInfo", "BadRequest"} <= kinds
    info = error_details_pb2.ErrorInfo()
    next(d for d in status.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)).Unpack(info)
    assert info.reason


def test_requests_latency_and_push_outcomes_are_counted(
    running_hub: RunningHub, world: DemoWorld
) -> None:
    ok_before = _sample(
        "certhub_grpc_requests_total",
        grpc_service=INTAKE,
        grpc_method="FetchCertificates",
        grpc_code="OK",
    )
    bad_before = _sample(
        "certhub_grpc_requests_total",
        grpc_service=INTAKE,
        grpc_method="FetchCertificates",
        grpc_code="INVALID_ARGUMENT",
    )
    latency_before = _sample(
        "certhub_grpc_request_duration_seconds_count",
        grpc_service=INTAKE,
        grpc_method="FetchCertificates",
    )
    accepted_before = _sample("certhub_pushes_total", outcome="ACCEPTED")
    duplicate_before = _sample("certhub_pushes_total", outcome="DUPLICATE")

    company = enterprise(32)
    licence = world.type_by_name("营业执照")
    department = world.departments[licence.issuer]
    envelope = sign_certificate(
        certificate_payload(world, licence.code, company, serial=1), [department.key]
    )
    rejected_before = _sample("certhub_pushes_total", outcome="REJECTED")
    with running_hub.client(department.principal) as client:
        client.push(envelope)
        client.push(envelope)  # the same bytes again: DUPLICATE
        with pytest.raises(InvalidArgumentError):
            client.push(b"{not json")  # refused with a status: counted as REJECTED
    item = world.item_by_name("公共场所卫生许可（新办）").code
    with running_hub.client(WINDOW) as window:
        for case in ("GL-M-1", "GL-M-2"):
            window.call(
                window.intake.FetchCertificates,
                _fetch_request(company.holder.id, item, case),
            )
        with pytest.raises(grpc.RpcError):
            window.intake.FetchCertificates(_fetch_request("bad", item, "GL-M-3"), timeout=10)
        window.call(window.directory.GetStats, directory_pb2.GetStatsRequest())

    ok = _sample(
        "certhub_grpc_requests_total",
        grpc_service=INTAKE,
        grpc_method="FetchCertificates",
        grpc_code="OK",
    )
    bad = _sample(
        "certhub_grpc_requests_total",
        grpc_service=INTAKE,
        grpc_method="FetchCertificates",
        grpc_code="INVALID_ARGUMENT",
    )
    assert ok - ok_before == 2
    assert bad - bad_before == 1
    assert (
        _sample(
            "certhub_grpc_request_duration_seconds_count",
            grpc_service=INTAKE,
            grpc_method="FetchCertificates",
        )
        - latency_before
        == 3
    )
    assert _sample("certhub_pushes_total", outcome="ACCEPTED") - accepted_before == 1
    assert _sample("certhub_pushes_total", outcome="DUPLICATE") - duplicate_before == 1
    assert _sample("certhub_pushes_total", outcome="REJECTED") - rejected_before == 1
