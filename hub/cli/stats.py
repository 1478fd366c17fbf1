"""`certhub stats`: the KPI report a district publishes."""

from __future__ import annotations

import argparse
import json
from typing import Any

from hub.cli.options import add_data_options, config_from
from hub.registry import Registry
from hub.runtime import open_engine
from hub.services.directory import Stats, compute_stats
from hub.services.registry_store import RegistrySource
from hub.store.engine import make_session_factory, session_scope


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser("stats", help="print the KPI report")
    add_data_options(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    engine = open_engine(config_from(args))
    sessions = make_session_factory(engine)
    registry = RegistrySource(sessions).refresh()
    with session_scope(sessions) as session:
        stats = compute_stats(session, registry)
    engine.dispose()
    print(
        json.dumps(stats_json(stats), ensure_ascii=False, indent=2)
        if args.json
        else render(stats, registry)
    )
    return 0


def stats_json(stats: Stats) -> dict[str, object]:
    return {
        "certificates_total": stats.certificates_total,
        "certificates_by_kind": stats.certificates_by_kind,
        "certificates_by_department": stats.certificates_by_department,
        "types_by_kind": stats.types_by_kind,
        "service_items": stats.service_items,
        "exempt_service_items": stats.exempt_service_items,
        "exemption_rate": round(stats.exemption_rate, 4),
        "cases_fetched": stats.cases_fetched,
        "cases_with_certificates": stats.cases_with_certificates,
        "usage_rate": round(stats.usage_rate, 4),
        "paper_materials_per_item": round(stats.paper_materials_per_item, 3),
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
        ("办件 cases that fetched", f"{stats.cases_fetched:,}"),
        (
            "cases served by e-certificates",
            f"{stats.cases_with_certificates:,} of {stats.cases_fetched:,}",
        ),
        ("用证率 usage rate", f"{stats.usage_rate:.2%}"),
    ]
    width = max(_display_width(label) for label, _ in rows) + 2
    return "\n".join(
        (label + " " * (width - _display_width(label)) + value).rstrip() for label, value in rows
    )


def _display_width(text: str) -> int:
    # CJK characters take two terminal columns.
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)
