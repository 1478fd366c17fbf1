"""A period's figures as the reform reports them, and the query that asks for them, with no
database: the breakdowns, the groups and the checks of a request.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from certhub.hub.errors import FieldViolation, InvalidArgument
from certhub.hub.services.directory.rules import Stats

# The longest period a monthly breakdown covers: ten years of months is more than any
# reform report charts, and bounds the work (and the answer) of one request.
MAX_MONTHS = 120


class Breakdown(StrEnum):
    MONTH = "MONTH"
    DEPARTMENT = "DEPARTMENT"
    SERVICE_ITEM = "SERVICE_ITEM"
    WINDOW = "WINDOW"


@dataclass(frozen=True, slots=True)
class StatsQuery:
    """A period of CST dates, both inclusive (None = open), and the breakdowns wanted."""

    since: dt.date | None = None
    until: dt.date | None = None
    by: tuple[Breakdown, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class StatsInput:
    """GetStats as the edge received it: the period's text fields and the breakdown names
    (an unknown enum number as its digits), checked by ``parse_query``."""

    since: str = ""
    until: str = ""
    by: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CaseGroup:
    key: str
    label: str
    registered: int
    closed: int
    with_e_certificate: int
    # Months only: the exemption rate of the registry in force at the month's end (None
    # when no registry was applied by then).
    exemption_rate: float | None = None

    @property
    def usage_rate(self) -> float:
        return self.with_e_certificate / self.registered if self.registered else 0.0


@dataclass(frozen=True, slots=True)
class PaperMaterial:
    code: str
    name: str
    cases_on_paper: int


@dataclass(frozen=True, slots=True)
class NonExemptItem:
    code: str
    name: str
    paper_materials: tuple[PaperMaterial, ...]
    cases_registered: int


@dataclass(frozen=True, slots=True)
class PeriodStats:
    """``base`` holds the certificate and registry figures (current state) and the fetched
    cases whose first fetch falls in the period."""

    base: Stats
    since: dt.date | None
    until: dt.date
    cases_registered: int
    cases_closed: int
    cases_with_e_certificate: int
    breakdowns: tuple[tuple[Breakdown, tuple[CaseGroup, ...]], ...]
    non_exempt: tuple[NonExemptItem, ...]

    @property
    def case_usage_rate(self) -> float:
        if not self.cases_registered:
            return 0.0
        return self.cases_with_e_certificate / self.cases_registered

    def breakdown(self, by: Breakdown) -> tuple[CaseGroup, ...]:
        return dict(self.breakdowns)[by]


def parse_query(since: str, until: str, by: Sequence[str]) -> StatsQuery:
    """The request's text fields as a query; bad values name their field."""
    violations: list[FieldViolation] = []

    def date(name: str, value: str) -> dt.date | None:
        if not value:
            return None
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            violations.append(FieldViolation(name, f"{value!r} is not an ISO date (YYYY-MM-DD)"))
            return None

    first, last = date("since", since), date("until", until)
    if first and last and first > last:
        violations.append(FieldViolation("until", f"{last} is before since {first}"))
    chosen: list[Breakdown] = []
    for i, name in enumerate(by):
        try:
            value = Breakdown(name)
        except ValueError:
            violations.append(
                FieldViolation(f"by[{i}]", f"must be one of {', '.join(Breakdown)}, got {name!r}")
            )
            continue
        if value in chosen:
            violations.append(FieldViolation(f"by[{i}]", f"{name} is asked twice"))
        chosen.append(value)
    if violations:
        raise InvalidArgument(
            "; ".join(f"{v.field}: {v.description}" for v in violations),
            reason="BAD_STATS_QUERY",
            violations=tuple(violations),
        )
    return StatsQuery(since=first, until=last, by=tuple(chosen))
