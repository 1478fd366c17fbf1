"""A bad fetch (or get) reports every problem at once, as a bad push does, not only the first
(issue 15, item 9): one INVALID_ARGUMENT with a field violation per malformed field, nothing
stored, one audited refusal. Real gRPC with mTLS on SQLite and PostgreSQL."""

from __future__ import annotations

import grpc
import pytest
from support.hubs import RunningHub
from support.probes import assert_audited_refusal, refused, snapshot, violation_fields

from certhub.hub.demo.world import DemoWorld, enterprise

WINDOW = "gulou-service-centre"
WRONG_CHECK_CHAR = "91350102MA2Y0001X7"  # ...X6 is right


def test_every_malformed_field_of_a_fetch_is_reported(running_hub: RunningHub) -> None:
    before = snapshot(running_hub.engine)
    with running_hub.client(WINDOW) as window:
        error = refused(
            grpc.StatusCode.INVALID_ARGUMENT,
            lambda: window.fetch(
                id_type="USCC", holder_id=WRONG_CHECK_CHAR, service_item="", case_number=" "
            ),
        )
    assert violation_fields(error) == ["holder.id", "service_item_code", "case_number"]
    assert error.reason == "INVALID_REQUEST"  # problems of several kinds
    assert error.message.startswith("3 problems in the request: holder.id: check character")
    assert snapshot(running_hub.engine) == before
    row = assert_audited_refusal(running_hub.engine, error, principal=WINDOW)
    assert row.action == "fetch"


@pytest.mark.slow
def test_an_id_shaped_case_number_is_reported_with_the_holder(
    running_hub: RunningHub, world: DemoWorld
) -> None:
    with running_hub.client(WINDOW) as window:
        error = refused(
            grpc.StatusCode.INVALID_ARGUMENT,
            lambda: window.fetch(
                id_type="RESIDENT_ID",
                holder_id="11010519491231002Y",
                service_item=next(iter(world.items)),
                case_number="110105194912310021",  # an ID typed into the case field
            ),
        )
    assert violation_fields(error) == ["holder.id", "case_number"]


def test_a_get_reports_its_certificate_id_with_the_rest(
    running_hub: RunningHub, world: DemoWorld
) -> None:
    with running_hub.client(WINDOW) as window:
        error = refused(
            grpc.StatusCode.INVALID_ARGUMENT,
            lambda: window.get(
                "",
                id_type="USCC",
                holder_id=enterprise(1).holder.id,
                service_item=next(iter(world.items)),
                case_number="",
            ),
        )
    assert violation_fields(error) == ["case_number", "certificate_id"]


def test_one_problem_keeps_its_own_reason(running_hub: RunningHub, world: DemoWorld) -> None:
    with running_hub.client(WINDOW) as window:
        error = refused(
            grpc.StatusCode.INVALID_ARGUMENT,
            lambda: window.fetch(
                id_type="USCC",
                holder_id=WRONG_CHECK_CHAR,
                service_item=next(iter(world.items)),
                case_number="GL-1",
            ),
        )
    assert violation_fields(error) == ["holder.id"]
    assert error.reason == "INVALID_HOLDER_ID"
