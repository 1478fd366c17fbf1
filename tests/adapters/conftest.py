"""The adapter tests push into a real hub on loopback with mTLS; the hub's own database is
SQLite here (its PostgreSQL path has its own tests), the *source* databases vary."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DATABASE_ENV
from support.databases import fresh_postgres_database

from certhub.hub.demo.world import DemoDepartment, DemoWorld


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The hub's database (overrides the suite's SQLite+PostgreSQL parametrisation)."""
    return f"sqlite:///{tmp_path / 'hub.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def source_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The department's own database: SQLite, and PostgreSQL where configured."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'department.db'}"
        return
    base = os.environ.get(DATABASE_ENV)
    if not base:
        pytest.skip(f"{DATABASE_ENV} is not set: PostgreSQL source tests need a server")
    with fresh_postgres_database(base, prefix="certhub_source") as url:
        yield url


@pytest.fixture
def amr(world: DemoWorld) -> DemoDepartment:
    return world.department_by_name("市场监督")
