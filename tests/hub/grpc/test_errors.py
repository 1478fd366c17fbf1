"""Rich error details as the Python client receives them over real mTLS: BadRequest field
violations, ErrorInfo reason and audit index, RetryInfo on a rate limit."""

from __future__ import annotations

import pytest
from support.hubs import RunningHub
from support.intake import WINDOW
from support.served import with_rate_limit

from certhub.core.rpc.client import InvalidArgumentError, PermissionDeniedError, RateLimitedError
from certhub.hub.demo.world import DemoWorld, enterprise


def test_invalid_argument_carries_field_violations_reason_and_audit_index(
    running_hub: RunningHub, world: DemoWorld
) -> None:
    item = world.item_by_name("建筑工程施工许可").code
    with running_hub.client(WINDOW) as window, pytest.raises(InvalidArgumentError) as caught:
        window.fetch(
            id_type="USCC", holder_id="91350100M000100Y4", service_item=item, case_number=""
        )
    error = caught.value
    fields = {v.field for v in error.violations}
    assert "holder.id" in fields
    assert all(v.description for v in error.violations)
    assert error.reason
    assert error.reason == error.reason.upper()  # a stable machine-readable reason
    assert error.audit_index is not None  # the refusal is in the audit log


def test_permission_denied_names_its_reason(running_hub: RunningHub, world: DemoWorld) -> None:
    street = "wenquan-street-office"  # handles only the first three items
    item = list(world.items.values())[-1].code
    with running_hub.client(street) as window, pytest.raises(PermissionDeniedError) as caught:
        window.fetch(
            id_type="USCC",
            holder_id=enterprise(1).holder.id,
            service_item=item,
            case_number="GL-E-1",
        )
    assert caught.value.reason
    assert caught.value.violations == ()
    assert caught.value.audit_index is not None


def test_rate_limit_answers_resource_exhausted_with_retry_info(
    running_hub: RunningHub, world: DemoWorld
) -> None:
    # One call of burst, then one token every 100 s: the second call must wait ~100 s.
    running_hub.apply_registry(
        with_rate_limit(world.registry_toml(), WINDOW, per_second=0.01, burst=1)
    )
    item = world.item_by_name("建筑工程施工许可").code
    with running_hub.client(WINDOW) as window:
        window.fetch(
            id_type="USCC",
            holder_id=enterprise(2).holder.id,
            service_item=item,
            case_number="GL-E-2",
        )
        with pytest.raises(RateLimitedError) as caught:
            window.fetch(
                id_type="USCC",
                holder_id=enterprise(2).holder.id,
                service_item=item,
                case_number="GL-E-3",
            )
    error = caught.value
    assert error.retry_after is not None
    assert 50 < error.retry_after <= 100
    assert error.reason
