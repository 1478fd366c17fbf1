"""The reform's figures for a period: usage over every case handled, breakdowns by month,
department, service item and window, and the items that still need paper and why.

The usage rate (电子应用率) is the reform's: of the cases registered in the period, those
closed with at least one material satisfied by an e-certificate. A case still open counts in
the denominator only, as it does in the reform's reports (accepted, not yet known to have
used one). The exemption rate (免证率) is a property of the registry; per month it is the
registry in force at the month's end, from the history of applied registries.

The figures' shapes and the query's checks need no database (``rules``); the counting is
``store``'s. Callers import from ``certhub.hub.services.stats``.
"""

from __future__ import annotations

from certhub.hub.services.stats.rules import (
    MAX_MONTHS,
    Breakdown,
    CaseGroup,
    NonExemptItem,
    PaperMaterial,
    PeriodStats,
    StatsInput,
    StatsQuery,
    parse_query,
)
from certhub.hub.services.stats.store import compute

__all__ = [
    "MAX_MONTHS",
    "Breakdown",
    "CaseGroup",
    "NonExemptItem",
    "PaperMaterial",
    "PeriodStats",
    "StatsInput",
    "StatsQuery",
    "compute",
    "parse_query",
]
