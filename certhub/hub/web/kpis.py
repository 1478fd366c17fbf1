"""The reform's KPIs as Prometheus gauges, computed from the database at scrape time.

Labels are registry codes only (department, service item, certificate kind): aggregates,
nothing about a person. ``certhub console`` serves them at ``/metrics``; Prometheus keeps
the history, so a dashboard charts them over time (docs/grafana/certhub-reform.json).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session, sessionmaker

from certhub.hub.registry import Registry
from certhub.hub.services.directory import compute_stats
from certhub.hub.store.engine import session_scope
from certhub.hub.store.models import CaseFile

# A scrape recomputes at most this often: the KPIs move with cases (minutes), and counting
# every case of a district on each 15 s scrape of several Prometheus servers is waste.
REFRESH_SECONDS = 60.0

# Every metric this collector exports, with its help text (the Grafana test reads these).
METRICS = {
    "certhub_reform_service_items": "service items in the registry, by exempt (true/false)",
    "certhub_reform_exemption_rate": "exempt service items / service items (免证率)",
    "certhub_reform_item_exempt": "1 when the service item needs no paper, else 0",
    "certhub_reform_item_paper_materials": "materials of the item that only paper satisfies",
    "certhub_reform_cases_registered": "cases registered, by handling department and item",
    "certhub_reform_cases_closed": "cases closed, by handling department and item",
    "certhub_reform_cases_with_e_certificate": (
        "cases closed with at least one material by e-certificate, by department and item"
    ),
    "certhub_reform_usage_rate": "cases with an e-certificate / cases registered (电子应用率)",
    "certhub_reform_department_usage_rate": "usage rate of one handling department",
    "certhub_reform_certificates": "stored certificates (current versions) by kind",
    "certhub_reform_department_certificates": "stored certificates by issuing department",
    "certhub_reform_accept_legacy_uscc": (
        "1 while the registry admits pilot-form USCCs with a wrong check char, else 0"
    ),
    "certhub_reform_legacy_uscc_certificates": (
        "stored certificates whose holder USCC was admitted only as a legacy code"
    ),
}


def _gauge(name: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, METRICS[name], labels=labels)


def snapshot(session: Session, registry: Registry) -> tuple[GaugeMetricFamily, ...]:
    base = compute_stats(session, registry)
    items = _gauge("certhub_reform_service_items", ["exempt"])
    items.add_metric(["true"], base.exempt_service_items)
    items.add_metric(["false"], base.service_items - base.exempt_service_items)
    exemption = _gauge("certhub_reform_exemption_rate")
    exemption.add_metric([], base.exemption_rate)
    exempt = _gauge("certhub_reform_item_exempt", ["service_item"])
    paper = _gauge("certhub_reform_item_paper_materials", ["service_item"])
    for item in registry.service_items.values():
        exempt.add_metric([item.code], 1.0 if item.exempt else 0.0)
        paper.add_metric([item.code], sum(1 for m in item.materials if m.paper_only))
    rows = session.execute(
        select(
            CaseFile.department_code,
            CaseFile.service_item_code,
            func.count(),
            func.coalesce(func.sum(case((CaseFile.closed_at.is_not(None), 1), else_=0)), 0),
            func.coalesce(func.sum(case((CaseFile.used_e_certificate.is_(True), 1), else_=0)), 0),
        ).group_by(CaseFile.department_code, CaseFile.service_item_code)
    ).all()
    registered = _gauge("certhub_reform_cases_registered", ["department", "service_item"])
    closed = _gauge("certhub_reform_cases_closed", ["department", "service_item"])
    used = _gauge("certhub_reform_cases_with_e_certificate", ["department", "service_item"])
    by_department: dict[str, list[int]] = {}
    for department, item, n, n_closed, n_used in rows:
        registered.add_metric([department, item], n)
        closed.add_metric([department, item], n_closed)
        used.add_metric([department, item], n_used)
        totals = by_department.setdefault(department, [0, 0])
        totals[0] += int(n)
        totals[1] += int(n_used)
    usage = _gauge("certhub_reform_usage_rate")
    all_registered = sum(t[0] for t in by_department.values())
    all_used = sum(t[1] for t in by_department.values())
    usage.add_metric([], all_used / all_registered if all_registered else 0.0)
    department_usage = _gauge("certhub_reform_department_usage_rate", ["department"])
    for department, (n, n_used) in sorted(by_department.items()):
        department_usage.add_metric([department], n_used / n if n else 0.0)
    certificates = _gauge("certhub_reform_certificates", ["kind"])
    for kind, n in sorted(base.certificates_by_kind.items()):
        certificates.add_metric([kind], n)
    department_certificates = _gauge("certhub_reform_department_certificates", ["department"])
    for department, n in sorted(base.certificates_by_department.items()):
        department_certificates.add_metric([department], n)
    accept_legacy = _gauge("certhub_reform_accept_legacy_uscc")
    accept_legacy.add_metric([], 1.0 if base.accept_legacy_uscc else 0.0)
    legacy_certificates = _gauge("certhub_reform_legacy_uscc_certificates")
    legacy_certificates.add_metric([], base.legacy_uscc_certificates)
    return (
        items,
        exemption,
        exempt,
        paper,
        registered,
        closed,
        used,
        usage,
        department_usage,
        certificates,
        department_certificates,
        accept_legacy,
        legacy_certificates,
    )


class KpiCollector(Collector):
    """Yields the KPI gauges, recomputed at most every ``refresh`` seconds."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        registry: Callable[[], Registry],
        *,
        refresh: float = REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._registry = registry
        self._refresh = refresh
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, tuple[GaugeMetricFamily, ...]] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            now = self._clock()
            if self._cached is None or now - self._cached[0] >= self._refresh:
                with session_scope(self._sessions) as session:
                    self._cached = (now, snapshot(session, self._registry()))
            families = self._cached[1]
        yield from families


def kpi_registry(collector: KpiCollector) -> CollectorRegistry:
    """A registry of the KPIs alone (no process or Python metrics of the console)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry
