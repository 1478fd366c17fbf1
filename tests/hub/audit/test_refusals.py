"""A refusal's entry goes through one path (hub.audit.refusals) whether its use case awaits
it on the event loop or blocks on it in a thread: the error comes back with the index of
the entry that records it, the summary of an exhausted budget, or the summary it cites."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

from sqlalchemy import select
from sqlalchemy.engine import Engine

from certhub.hub.audit.budget import RefusalBudget
from certhub.hub.audit.committer import GroupCommitter
from certhub.hub.audit.entry import Action, AuditRecord
from certhub.hub.audit.refusals import submit_refusal
from certhub.hub.errors import HubError, InvalidArgument
from certhub.hub.observability.metrics import metrics
from certhub.hub.store.engine import make_session_factory, session_scope
from certhub.hub.store.models import AuditEntry

NOW = dt.datetime(2026, 12, 5, tzinfo=dt.UTC)
PRINCIPAL = "gulou-service-centre"
METHOD = "/certhub.v1.AuditService/QueryAudit"


class Clock:
    """The budget's clock, held still: no token comes back during a test."""

    def __call__(self) -> float:
        return 1000.0


def _entry() -> AuditRecord:
    error = _error()
    return AuditRecord(
        time=NOW,
        principal=PRINCIPAL,
        action=Action.AUDIT_QUERY,
        outcome=error.status_name,
        method=METHOD,
    )


def _error() -> HubError:
    return InvalidArgument("page_size: must not be negative", reason="BAD_PAGE_SIZE")


def _leaves(engine: Engine) -> list[dict[str, object]]:
    with session_scope(make_session_factory(engine)) as session:
        rows = session.execute(select(AuditEntry.leaf).order_by(AuditEntry.idx)).scalars()
        return [json.loads(bytes(leaf)) for leaf in rows]


def test_awaited_and_blocking_refusals_are_logged_alike(
    engine: Engine, committer: GroupCommitter
) -> None:
    refusals = RefusalBudget(burst=5, clock=Clock())

    async def on_the_loop() -> HubError:
        return await submit_refusal(committer, refusals, _entry(), _error()).wait()

    awaited = asyncio.run(on_the_loop())
    blocked = submit_refusal(committer, refusals, _entry(), _error()).result()
    assert [e.reason for e in (awaited, blocked)] == ["BAD_PAGE_SIZE", "BAD_PAGE_SIZE"]
    assert (awaited.audit_index, blocked.audit_index) == (0, 1)
    leaves = _leaves(engine)
    assert [leaf["outcome"] for leaf in leaves] == ["INVALID_ARGUMENT"] * 2
    assert {leaf["method"] for leaf in leaves} == {METHOD}


def test_past_the_budget_one_summary_is_logged_and_later_refusals_cite_it(
    engine: Engine, committer: GroupCommitter
) -> None:
    refusals = RefusalBudget(burst=1, clock=Clock())
    suppressed_before = metrics().refusals_suppressed._value.get()
    first = submit_refusal(committer, refusals, _entry(), _error()).result()
    summary = submit_refusal(committer, refusals, _entry(), _error()).result()

    async def suppressed_on_the_loop() -> HubError:
        return await submit_refusal(committer, refusals, _entry(), _error()).wait()

    later = [
        submit_refusal(committer, refusals, _entry(), _error()).result(),
        asyncio.run(suppressed_on_the_loop()),
    ]
    assert first.reason == "BAD_PAGE_SIZE"
    assert first.audit_index == 0
    assert summary.reason == "REFUSALS_RATE_LIMITED"
    assert summary.audit_index == 1
    assert "BAD_PAGE_SIZE" in str(summary)
    assert [(e.reason, e.audit_index) for e in later] == [("REFUSALS_RATE_LIMITED", 1)] * 2
    leaves = _leaves(engine)
    assert len(leaves) == 2
    assert leaves[1]["outcome"] == "RESOURCE_EXHAUSTED"
    assert str(leaves[1]["method"]).startswith(f"{METHOD}: refusal budget exhausted")
    assert metrics().refusals_suppressed._value.get() == suppressed_before + 2
