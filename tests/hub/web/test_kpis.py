"""The reform's KPIs as Prometheus gauges (hub.web.kpis) on a real database, and
the Grafana dashboard in docs/ querying only metric names that exist."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from sqlalchemy.engine import Engine

from certhub.hub.demo.history import backfill
from certhub.hub.demo.world import DemoWorld
from certhub.hub.registry import Registry
from certhub.hub.services import stats
from certhub.hub.services.cases import Channel, Registration, register_case
from certhub.hub.services.registry_store import RegistrySource, apply_registry
from certhub.hub.store.engine import make_session_factory, session_scope
from certhub.hub.web.kpis import METRICS, KpiCollector, kpi_registry

DASHBOARD = Path(__file__).resolve().parents[3] / "docs" / "grafana" / "certhub-reform.json"
NOW = dt.datetime(2026, 12, 4, 12, tzinfo=dt.UTC)


def _samples(collector: KpiCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in collector.collect()
        for s in family.samples
    }


def _district(engine: Engine, world: DemoWorld) -> tuple[KpiCollector, Registry, list[float]]:
    sessions = make_session_factory(engine)
    with session_scope(sessions, write=True) as session:
        backfill(session, world, months=3, now=NOW)
        apply_registry(session, world.registry_toml(), now=NOW)
    registry = RegistrySource(sessions).refresh()
    clock = [0.0]
    return KpiCollector(sessions, lambda: registry, clock=lambda: clock[0]), registry, clock


def test_gauges_equal_the_period_figures_and_carry_no_personal_data(
    engine: Engine, world: DemoWorld
) -> None:
    collector, registry, _ = _district(engine, world)
    samples = _samples(collector)
    with session_scope(make_session_factory(engine)) as session:
        expected = stats.compute(session, registry, stats.StatsQuery(), now=NOW)
    assert samples[("certhub_reform_usage_rate", ())] == pytest.approx(expected.case_usage_rate)
    assert samples[("certhub_reform_exemption_rate", ())] == pytest.approx(
        expected.base.exemption_rate
    )
    registered = sum(v for (n, _), v in samples.items() if n == "certhub_reform_cases_registered")
    used = sum(v for (n, _), v in samples.items() if n == "certhub_reform_cases_with_e_certificate")
    assert (registered, used) == (expected.cases_registered, expected.cases_with_e_certificate)
    # Labels are registry codes: departments, items, kinds, and nothing else.
    allowed = {
        *registry.departments,
        *registry.service_items,
        "true",
        "false",
        "LICENCE",
        "APPROVAL",
    }
    for _, labels in samples:
        for _, value in labels:
            assert value in allowed, value
    # No certificates were pushed here: those two families are empty, the rest present.
    empty = {"certhub_reform_certificates", "certhub_reform_department_certificates"}
    assert set(METRICS) - empty <= {name for name, _ in samples}


def test_a_scrape_recomputes_at_most_every_refresh_interval(
    engine: Engine, world: DemoWorld
) -> None:
    collector, registry, clock = _district(engine, world)
    before = _samples(collector)
    item = next(iter(registry.service_items.values()))
    registration = Registration(
        case_number="KPI-1",
        item=item,
        channel=Channel.WINDOW,
        department_code=next(iter(registry.departments)),
        window="1号窗",
        principal="gulou-service-centre",
    )
    with session_scope(make_session_factory(engine), write=True) as session:
        register_case(session, registration, now=NOW)
    key = "certhub_reform_cases_registered"

    def total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
        return sum(v for (n, _), v in samples.items() if n == key)

    assert total(_samples(collector)) == total(before)  # cached
    clock[0] += 61
    assert total(_samples(collector)) == total(before) + 1


def test_the_dashboard_queries_only_metrics_that_exist(engine: Engine, world: DemoWorld) -> None:
    collector, _, _ = _district(engine, world)
    # Families are declared even while they have no sample (no certificate pushed here).
    text = generate_latest(kpi_registry(collector)).decode()
    exported = set(re.findall(r"^# TYPE (certhub_\w+) gauge$", text, re.M))
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queried: set[str] = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], f"panel {panel['title']!r} queries nothing"
        for target in panel["targets"]:
            names = set(re.findall(r"\bcerthub_\w+", target["expr"]))
            assert names or target["expr"].startswith("vector("), target["expr"]
            queried |= names
    missing = queried - exported
    assert not missing, f"the dashboard queries metrics nothing exports: {sorted(missing)}"
    assert queried == set(METRICS), "every KPI has a panel, every panel a KPI"
