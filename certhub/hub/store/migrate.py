"""Schema migrations with Alembic, configured in code (no alembic.ini to lose).

``certhub db upgrade`` calls ``upgrade``; the hub refuses to serve (health NOT_SERVING) while
``pending`` says the database is behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config_without_engine()).get_current_head()
    assert head is not None
    return head


def _config_without_engine() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def pending(engine: Engine) -> bool:
    """True while the database schema is behind this code's migrations."""
    return current_revision(engine) != head_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    command.upgrade(_config(engine), revision)
