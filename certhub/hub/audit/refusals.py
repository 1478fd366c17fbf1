"""Auditing a refusal, written once for every use case: its entry goes into the log within
the principal's refusal budget (``certhub.hub.audit.budget``) before the refusal is answered.

``submit_refusal`` takes the refusal's entry and error and queues what the budget allows:
the entry itself, the summary of an exhausted budget (the error becomes RESOURCE_EXHAUSTED
REFUSALS_RATE_LIMITED), or nothing (the error cites the summary's index). The coroutine
use cases await ``wait()``; the AuditService's, which run in a worker thread, block on
``result()``; a push stream submits now and waits when its turn to answer comes. Each gets
the error to raise, carrying the index of the entry that records it.
"""

from __future__ import annotations

import dataclasses

from certhub.hub.audit import budget
from certhub.hub.audit.committer import GroupCommitter, Pending
from certhub.hub.audit.entry import AuditRecord
from certhub.hub.errors import HubError, ResourceExhausted
from certhub.hub.observability.metrics import metrics

__all__ = ["AuditedRefusal", "submit_refusal"]


class AuditedRefusal:
    """A refusal whose entry (if the budget allows one) is queued for the group commit."""

    def __init__(
        self,
        *,
        refusals: budget.RefusalBudget,
        principal: str,
        error: HubError,
        pending: Pending[None] | None,
        summary: bool,
    ) -> None:
        self._refusals = refusals
        self._principal = principal
        self._error = error
        self._pending = pending
        self._summary = summary

    async def wait(self) -> HubError:
        """On the event loop it was submitted from: the error to raise, once its entry is
        committed."""
        if self._pending is not None:
            self._logged((await self._pending.wait()).audit_index)
        return self._error

    def result(self) -> HubError:
        """In a thread (submitted with no running loop): as ``wait``, blocking."""
        if self._pending is not None:
            self._logged(self._pending.result().audit_index)
        return self._error

    def _logged(self, index: int) -> None:
        self._error.audit_index = index
        if self._summary:
            # The refusals suppressed after this one cite the summary's index.
            self._refusals.summary_logged(self._principal, index)


def submit_refusal(
    committer: GroupCommitter,
    refusals: budget.RefusalBudget,
    entry: AuditRecord,
    error: HubError,
) -> AuditedRefusal:
    """Queue ``entry`` (or the budget's summary, or nothing) without waiting for it."""
    logged, error, summary = _screen(refusals, entry, error)
    return AuditedRefusal(
        refusals=refusals,
        principal=entry.principal,
        error=error,
        pending=committer.submit_entry(logged) if logged is not None else None,
        summary=summary,
    )


def _screen(
    refusals: budget.RefusalBudget, entry: AuditRecord, error: HubError
) -> tuple[AuditRecord | None, HubError, bool]:
    """(the entry to log or None, the error to raise, whether the entry is the summary
    of a principal's exhausted refusal budget)."""
    verdict = refusals.take(entry.principal)
    if verdict.kind is budget.Kind.LOG:
        return entry, error, False
    limited = ResourceExhausted(
        f"principal {entry.principal!r} had over {refusals.burst} calls refused "
        "recently: its refused calls are answered RESOURCE_EXHAUSTED and not audited one "
        f"by one for the next {verdict.retry_after:.1f} s (this call was refused: "
        f"{error.reason})",
        reason="REFUSALS_RATE_LIMITED",
        retry_after=verdict.retry_after,
    )
    if verdict.kind is budget.Kind.SUMMARY:
        what = entry.method or str(entry.action)
        summary = dataclasses.replace(
            entry,
            outcome=limited.status_name,
            method=f"{what}: refusal budget exhausted, further refusals not logged one by one",
        )
        return summary, limited, True
    metrics().refusals_suppressed.inc()
    limited.audit_index = verdict.summary_index
    return None, limited, False
