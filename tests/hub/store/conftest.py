"""A fresh PostgreSQL database per test, for the connection tests of hub.store."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine
from support.databases import fresh_postgres_database

from certhub.hub.store.engine import make_engine

DATABASE_ENV = "CERTHUB_TEST_DATABASE_URL"


@pytest.fixture
def pg_engine() -> Iterator[Engine]:
    base = os.environ.get(DATABASE_ENV)
    if not base:
        pytest.skip(f"{DATABASE_ENV} is not set: PostgreSQL connection tests need a server")
    with fresh_postgres_database(base) as url:
        engine = make_engine(url)
        yield engine
        engine.dispose()
