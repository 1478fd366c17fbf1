"""The demo's months of history: a figure of the reform's kind, and a trend to chart."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.engine import Engine

from certhub.hub.demo.history import CASES_PER_MONTH, backfill
from certhub.hub.demo.world import DemoWorld
from certhub.hub.services import stats
from certhub.hub.services.registry_store import RegistrySource, apply_registry
from certhub.hub.store.engine import make_session_factory, session_scope

NOW = dt.datetime(2026, 12, 4, 12, tzinfo=dt.UTC)


@pytest.mark.slow
def test_a_year_of_history_looks_like_the_reform(engine: Engine, world: DemoWorld) -> None:
    sessions = make_session_factory(engine)
    with session_scope(sessions, write=True) as session:
        history = backfill(session, world, months=12, now=NOW)
        apply_registry(session, world.registry_toml(), now=NOW)
    assert history.cases == 12 * CASES_PER_MONTH
    registry = RegistrySource(sessions).refresh()
    with session_scope(sessions) as session:
        result = stats.compute(
            session, registry, stats.StatsQuery(by=(stats.Breakdown.MONTH,)), now=NOW
        )
    # ~2,880 cases registered, ~80% of them with an e-certificate: Gulou's 2,864 and 80.97%.
    assert result.cases_registered == history.cases
    assert result.cases_with_e_certificate == history.with_e_certificate
    assert 0.75 < result.case_usage_rate < 0.85
    months = result.breakdown(stats.Breakdown.MONTH)
    assert (months[0].key, months[-1].key) == ("2025-12", "2026-12")
    assert all(g.registered == CASES_PER_MONTH for g in months[:-1])
    # Exemption rises as earlier registries give way to later ones, up to today's registry.
    rates = [g.exemption_rate for g in months]
    assert all(r is not None for r in rates)
    assert rates == sorted(rates)  # type: ignore[type-var]
    assert (
        rates[0]
        < rates[-1]
        == pytest.approx(
            sum(1 for i in world.items.values() if all(m[2] for m in i.materials))
            / len(world.items)
        )
    )
    # The reform's rate counts cases that never reached the hub; the fetch-based one cannot.
    assert result.base.usage_rate > result.case_usage_rate


def test_no_months_no_history(engine: Engine, world: DemoWorld) -> None:
    with session_scope(make_session_factory(engine), write=True) as session:
        assert backfill(session, world, months=0, now=NOW).cases == 0
