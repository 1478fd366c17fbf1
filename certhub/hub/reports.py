"""The KPI report a district publishes, as text and as JSON: printed by `certhub stats`
and by the demo (which sits below the CLI, so the renderers cannot live in it)."""

from __future__ import annotations

from certhub.hub.registry import Registry
from certhub.hub.services.directory import Stats
from certhub.hub.services.stats import Breakdown, PeriodStats


def period_json(period: PeriodStats, registry: Registry) -> dict[str, object]:
    return {
        **stats_json(period.base, registry),
        "since": period.since.isoformat() if period.since else None,
        "until": period.until.isoformat(),
        "cases_registered": period.cases_registered,
        "cases_closed": period.cases_closed,
        "cases_with_e_certificate": period.cases_with_e_certificate,
        "case_usage_rate": round(period.case_usage_rate, 4),
        "breakdowns": {
            str(by).lower(): [
                {
                    "key": g.key,
                    "label": g.label,
                    "cases_registered": g.registered,
                    "cases_closed": g.closed,
                    "cases_with_e_certificate": g.with_e_certificate,
                    "usage_rate": round(g.usage_rate, 4),
                    **(
                        {
                            "exemption_rate": None
                            if g.exemption_rate is None
                            else round(g.exemption_rate, 4)
                        }
                        if by is Breakdown.MONTH
                        else {}
                    ),
                }
                for g in groups
            ]
            for by, groups in period.breakdowns
        },
        "non_exempt_items": [
            {
                "code": i.code,
                "name": i.name,
                "cases_registered": i.cases_registered,
                "paper_materials": [
                    {"code": m.code, "name": m.name, "cases_on_paper": m.cases_on_paper}
                    for m in i.paper_materials
                ],
            }
            for i in period.non_exempt
        ],
    }


def render_period(period: PeriodStats) -> str:
    """The case figures of the period, its breakdowns and what still needs paper."""
    since = period.since.isoformat() if period.since else "start"
    lines = [
        f"办件 cases handled {since} .. {period.until.isoformat()}",
        _table(
            [
                ("  受理 registered", f"{period.cases_registered:,}"),
                ("  办结 closed", f"{period.cases_closed:,}"),
                ("  用电子证照 with an e-certificate", f"{period.cases_with_e_certificate:,}"),
                ("  电子应用率 usage rate (of registered)", f"{period.case_usage_rate:.2%}"),
            ]
        ),
    ]
    titles = {
        Breakdown.MONTH: "按月 by month",
        Breakdown.DEPARTMENT: "按部门 by department",
        Breakdown.SERVICE_ITEM: "按事项 by service item",
        Breakdown.WINDOW: "按窗口 by window",
    }
    for by, groups in period.breakdowns:
        lines.append(
            f"{titles[by]}  (registered / closed / e-certificate / usage"
            + (" / exemption)" if by is Breakdown.MONTH else ")")
        )
        rows = []
        for g in groups:
            value = (
                f"{g.registered:>6,} {g.closed:>6,} {g.with_e_certificate:>6,} {g.usage_rate:>7.2%}"
            )
            if by is Breakdown.MONTH:
                value += " " + (
                    f"{g.exemption_rate:>7.2%}" if g.exemption_rate is not None else "      -"
                )
            label = g.key if g.label == g.key else f"{g.label} ({g.key})"
            rows.append((f"  {label}", value))
        lines.append(_table(rows) if rows else "  (no cases)")
    lines.append(f"仍需纸质材料的事项 items still needing paper: {len(period.non_exempt)}")
    for item in period.non_exempt:
        lines.append(f"  {item.code} {item.name} ({item.cases_registered:,} cases)")
        lines.extend(
            f"    - {m.code} {m.name}: on paper in {m.cases_on_paper:,} closed cases"
            for m in item.paper_materials
        )
    return "\n".join(lines)


def stats_json(stats: Stats, registry: Registry) -> dict[str, object]:
    return {
        "certificates_total": stats.certificates_total,
        "certificates_by_kind": stats.certificates_by_kind,
        "certificates_by_department": stats.certificates_by_department,
        # The codes above (and the department breakdown's keys) by name, from the registry in
        # force; a code the registry no longer lists has none.
        "department_names": {
            code: department.name for code, department in sorted(registry.departments.items())
        }
        | {
            code: None
            for code in sorted(stats.certificates_by_department)
            if code not in registry.departments
        },
        "types_by_kind": stats.types_by_kind,
        "service_items": stats.service_items,
        "exempt_service_items": stats.exempt_service_items,
        "exemption_rate": round(stats.exemption_rate, 4),
        "cases_fetched": stats.cases_fetched,
        "cases_with_certificates": stats.cases_with_certificates,
        "usage_rate": round(stats.usage_rate, 4),
        "paper_materials_per_item": round(stats.paper_materials_per_item, 3),
        "accept_legacy_uscc": stats.accept_legacy_uscc,
        "legacy_uscc_certificates": stats.legacy_uscc_certificates,
    }


def render(stats: Stats, registry: Registry) -> str:
    """A plain-text table, as printed in a district's monthly report."""
    rows: list[tuple[str, str]] = [
        ("电子证照 certificates (current versions)", f"{stats.certificates_total:,}"),
        ("  by kind", ""),
    ]
    rows += [(f"    {kind}", f"{n:,}") for kind, n in sorted(stats.certificates_by_kind.items())]
    rows.append(("  by issuing department", ""))
    for code, n in sorted(stats.certificates_by_department.items(), key=lambda kv: -kv[1]):
        department = registry.departments.get(code)
        rows.append((f"    {department.name if department else code}", f"{n:,}"))
    rows.append(("证照类型 certificate types", f"{sum(stats.types_by_kind.values()):,}"))
    rows.append(("  by kind", ""))
    rows += [(f"    {kind}", f"{n:,}") for kind, n in sorted(stats.types_by_kind.items())]
    rows += [
        ("事项 service items", f"{stats.service_items:,}"),
        (
            "免证事项 exempt items",
            f"{stats.exempt_service_items:,} of {stats.service_items:,}",
        ),
        ("免证率 exemption rate", f"{stats.exemption_rate:.2%}"),
        ("paper materials left per item (average)", f"{stats.paper_materials_per_item:.2f}"),
        ("办件 cases that fetched (reached the hub)", f"{stats.cases_fetched:,}"),
        (
            "cases served by e-certificates",
            f"{stats.cases_with_certificates:,} of {stats.cases_fetched:,}",
        ),
        ("用证率 usage rate (of fetching cases)", f"{stats.usage_rate:.2%}"),
        (
            "accept_legacy_uscc (pilot USCCs, wrong check char)",
            ("on" if stats.accept_legacy_uscc else "off")
            + f"; {stats.legacy_uscc_certificates:,} certificates held under one",
        ),
    ]
    return _table(rows)


def _table(rows: list[tuple[str, str]]) -> str:
    width = max(_display_width(label) for label, _ in rows) + 2
    return "\n".join(
        (label + " " * (width - _display_width(label)) + value).rstrip() for label, value in rows
    )


def _display_width(text: str) -> int:
    # CJK characters take two terminal columns.
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)
