"""Refused calls of one principal cannot grow the audit log without bound (issue 12, build
item 6): past its refusal budget a principal's refusals are answered RESOURCE_EXHAUSTED
REFUSALS_RATE_LIMITED, logged once as a summary entry and counted, not one leaf each; its
successful calls and other principals are unaffected; the budget refills. Over real mTLS on
SQLite and PostgreSQL, with a small budget on a controlled clock."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
from sqlalchemy import func, select
from support.hubs import RunningHub
from support.intake import WINDOW, push_licence
from support.probes import refused

from certhub.core.rpc.client import HubClient, HubClientError
from certhub.hub.audit.budget import REFUSAL_BURST, REFUSAL_RATE_PER_SECOND, RefusalBudget
from certhub.hub.casework import Casework
from certhub.hub.demo.world import DemoWorld
from certhub.hub.errors import HubError, InvalidArgument
from certhub.hub.observability.metrics import metrics
from certhub.hub.store.engine import session_scope
from certhub.hub.store.models import AuditEntry
from certhub.v1 import audit_pb2

BURST = 5
RATE = 0.5  # a token every 2 s of the test's clock
AUDITOR = "gulou-audit-office"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def entries(running: RunningHub) -> int:
    with session_scope(running.hub.sessions) as session:
        return int(session.execute(select(func.count()).select_from(AuditEntry)).scalar_one())


def leaf(running: RunningHub, index: int) -> dict[str, object]:
    with session_scope(running.hub.sessions) as session:
        raw = session.execute(select(AuditEntry.leaf).where(AuditEntry.idx == index)).scalar_one()
    value = json.loads(bytes(raw))
    assert isinstance(value, dict)
    return value


def bad_fetch(client: HubClient, item: str, holder: str) -> HubClientError:
    with pytest.raises(HubClientError) as caught:
        client.fetch(id_type="USCC", holder_id=holder, service_item=item, case_number=" x")
    return caught.value


def test_refusals_past_the_budget_are_summarised_not_logged_one_by_one(
    running_hub: RunningHub, world: DemoWorld
) -> None:
    pushed = push_licence(running_hub, world, 41)
    clock = Clock()
    running_hub.hub.refusals = RefusalBudget(burst=BURST, rate_per_second=RATE, clock=clock)
    suppressed_before = metrics().refusals_suppressed._value.get()
    start = entries(running_hub)
    with running_hub.client(WINDOW) as window:
        logged = [bad_fetch(window, pushed.item_code, pushed.holder_id) for _ in range(BURST)]
        assert {e.reason for e in logged} == {"BAD_CASE_NUMBER"}
        assert len({e.audit_index for e in logged}) == BURST
        summary = bad_fetch(window, pushed.item_code, pushed.holder_id)
        later = [bad_fetch(window, pushed.item_code, pushed.holder_id) for _ in range(30)]
        # Its successful calls are served and logged as usual meanwhile.
        ok = window.fetch(
            id_type="USCC", holder_id=pushed.holder_id, service_item=pushed.item_code,
            case_number="GL-BUDGET-1",
        )  # fmt: skip
    assert summary.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert summary.reason == "REFUSALS_RATE_LIMITED"
    assert "BAD_CASE_NUMBER" in summary.message
    assert summary.retry_after is not None
    assert summary.retry_after > 0
    summary_leaf = leaf(running_hub, summary.audit_index or -1)
    assert summary_leaf["outcome"] == "RESOURCE_EXHAUSTED"
    assert summary_leaf["principal"] == WINDOW
    assert "refusal budget exhausted" in str(summary_leaf["method"])
    assert {(e.code, e.reason) for e in later} == {
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "REFUSALS_RATE_LIMITED")
    }
    # The suppressed refusals cite the summary entry and add none of their own.
    assert {e.audit_index for e in later} == {summary.audit_index}
    assert entries(running_hub) == start + BURST + 1 + 1  # burst, summary, the good fetch
    assert ok.audit_index >= start
    assert metrics().refusals_suppressed._value.get() == suppressed_before + 30

    # Another principal's refusals are its own.
    with running_hub.client(AUDITOR) as auditor:
        other = refused(
            grpc.StatusCode.PERMISSION_DENIED,
            lambda: auditor.fetch(
                id_type="USCC", holder_id=pushed.holder_id, service_item=pushed.item_code,
                case_number="GL-BUDGET-2",
            ),
        )  # fmt: skip
    assert other.audit_index is not None

    # A token comes back every 2 s: one refusal logged as usual, the next suppressed again
    # with no new summary (the episode lasts until the bucket is full).
    clock.now += 1 / RATE
    with running_hub.client(WINDOW) as window:
        again = bad_fetch(window, pushed.item_code, pushed.holder_id)
        then = bad_fetch(window, pushed.item_code, pushed.holder_id)
    assert again.reason == "BAD_CASE_NUMBER"
    assert then.reason == "REFUSALS_RATE_LIMITED"
    assert then.audit_index == summary.audit_index
    # Full again after the principal stopped: a new episode has its own summary.
    clock.now += BURST / RATE
    with running_hub.client(WINDOW) as window:
        fresh = [bad_fetch(window, pushed.item_code, pushed.holder_id) for _ in range(BURST + 1)]
    assert [e.reason for e in fresh] == ["BAD_CASE_NUMBER"] * BURST + ["REFUSALS_RATE_LIMITED"]
    assert fresh[-1].audit_index not in (None, summary.audit_index)


def test_the_audit_service_refusals_share_the_budget(running_hub: RunningHub) -> None:
    running_hub.hub.refusals = RefusalBudget(burst=2, rate_per_second=RATE, clock=Clock())
    start = entries(running_hub)
    with running_hub.client(WINDOW) as window:
        codes = []
        for _ in range(6):
            with pytest.raises(HubClientError) as caught:
                window.call(window.audit.QueryAudit, audit_pb2.AuditQuery())
            codes.append((caught.value.code.name, caught.value.reason))
    assert codes[:2] == [("PERMISSION_DENIED", "WRONG_ROLE")] * 2
    assert set(codes[2:]) == {("RESOURCE_EXHAUSTED", "REFUSALS_RATE_LIMITED")}
    assert entries(running_hub) == start + 3


def test_the_default_budget_is_documented() -> None:
    text = (Path(__file__).resolve().parents[3] / "docs" / "trust.md").read_text(encoding="utf-8")
    assert "REFUSAL_BURST" in text
    assert "REFUSAL_RATE_PER_SECOND" in text
    assert f"{REFUSAL_BURST:,}" in text
    assert f"{REFUSAL_RATE_PER_SECOND:g} a second" in text


def test_console_refusals_share_the_budget(running_hub: RunningHub) -> None:
    running_hub.hub.refusals = RefusalBudget(burst=2, rate_per_second=RATE, clock=Clock())
    work = Casework(running_hub.hub)
    auditor = running_hub.hub.registry().principals[AUDITOR]
    start = entries(running_hub)
    reasons = []
    for _ in range(5):
        with pytest.raises(HubError) as caught:
            running_hub.run(
                work.console_refuse(
                    auditor, "/audit?since=yesterday", InvalidArgument("bad since", reason="BAD")
                )
            )
        reasons.append(caught.value.reason)
    assert reasons == ["BAD", "BAD", "REFUSALS_RATE_LIMITED", "REFUSALS_RATE_LIMITED",
                       "REFUSALS_RATE_LIMITED"]  # fmt: skip
    assert entries(running_hub) == start + 3
