"""The `sql` source on real databases: a query instead of a table, and the watermark."""

from __future__ import annotations

from sqlalchemy import update
from support.adapters import create_registrations, registration, registrations

from certhub.adapters.config import SqlSourceConfig
from certhub.adapters.records import Checkpoint, SourceRecord
from certhub.adapters.sources.sql import WATERMARK_CHECKPOINT, SqlSource


class _State:
    """Checkpoints as the outbox would hold them after a run."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def checkpoint(self, name: str) -> str | None:
        return self.values.get(name)


def _source(url: str, **overrides: object) -> SqlSource:
    settings: dict[str, object] = {
        "url": url,
        "table": None,
        "query": "SELECT r.*, 'x' AS extra FROM business_registration r "
        "WHERE licence_type = '营业执照'",
        "key": ("reg_no",),
        "watermark": "row_version",
        "marker": ("row_version",),
        "batch_size": 2,
    }
    settings.update(overrides)
    return SqlSource(SqlSourceConfig(**settings))  # type: ignore[arg-type]


def test_query_source_resumes_from_its_watermark_and_sees_changed_rows(source_url: str) -> None:
    rows = [
        registration(n, licence_type="营业执照" if n % 2 == 0 else "食品经营许可证")
        for n in range(8)
    ]
    engine = create_registrations(source_url, rows)
    source, state = _source(source_url), _State()
    try:
        assert source.estimate(state) == 4
        items = list(source.read(state))
        records = [i for i in items if isinstance(i, SourceRecord)]
        assert [r.key for r in records] == ["GL00000000", "GL00000002", "GL00000004", "GL00000006"]
        assert records[0].location == "query [reg_no=GL00000000]"
        assert records[0].values["extra"] == "x"
        checkpoints = [i for i in items if isinstance(i, Checkpoint)]
        assert checkpoints[-1].name == WATERMARK_CHECKPOINT
        state.values[WATERMARK_CHECKPOINT] = checkpoints[-1].value

        with engine.begin() as conn:
            conn.execute(
                update(registrations)
                .where(registrations.c.reg_no == "GL00000002")
                .values(row_version=50)
            )
        again = [i for i in source.read(state) if isinstance(i, SourceRecord)]
        # The last row at the old watermark is read again (>=), the changed row is new.
        assert [r.key for r in again] == ["GL00000006", "GL00000002"]
        assert again[1].marker != records[1].marker
    finally:
        source.close()
        engine.dispose()
