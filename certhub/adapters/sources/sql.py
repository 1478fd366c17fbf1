"""`sql` source: a table or query in any database SQLAlchemy can reach.

Rows are read in watermark order with ``watermark >= last checkpoint`` (not ``>``): rows
sharing the checkpoint's value may not all have been stored when the checkpoint was, and
re-reading them costs nothing because their change marker is unchanged. Rows are streamed
(server-side cursor where the driver has one), never all held in memory.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from collections.abc import Iterator, Mapping
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from certhub.adapters.config import SqlSourceConfig
from certhub.adapters.errors import ConfigError, SourceError
from certhub.adapters.records import Checkpoint, Problem, SourceItem, SourceRecord, StateView

__all__ = ["WATERMARK_CHECKPOINT", "SqlSource"]

WATERMARK_CHECKPOINT = "sql.watermark"


class SqlSource:
    def __init__(self, config: SqlSourceConfig) -> None:
        self._c = config
        try:
            url = make_url(config.url)
        except ArgumentError as exc:
            raise ConfigError(f"[source].url: not a SQLAlchemy URL ({exc})") from exc
        self._safe_url = url.render_as_string(hide_password=True)
        self._engine: Engine = create_engine(url)
        quote = self._engine.dialect.identifier_preparer.quote
        if config.table is not None:
            relation = ".".join(quote(part) for part in config.table.split("."))
            self._relation = relation
            self._name = config.table
        else:
            assert config.query is not None
            self._relation = f"({config.query.strip().rstrip(';')}) AS certhub_source"
            self._name = "query"
        self._wm = quote(config.watermark)
        self._order = ", ".join([self._wm, *(quote(k) for k in config.key)])

    @property
    def description(self) -> str:
        return f"sql {self._safe_url} {self._name}"

    def close(self) -> None:
        self._engine.dispose()

    def _where(self, state: StateView) -> tuple[str, dict[str, Any]]:
        stored = state.checkpoint(WATERMARK_CHECKPOINT)
        if stored is None:
            return "", {}
        return f" WHERE {self._wm} >= :wm", {"wm": _load_watermark(stored)}

    def estimate(self, state: StateView) -> int | None:
        where, params = self._where(state)
        sql = f"SELECT count(*) FROM {self._relation}{where}"  # noqa: S608 -- quoted identifiers
        try:
            with self._engine.connect() as conn:
                return int(conn.execute(text(sql), params).scalar_one())
        except SQLAlchemyError as exc:
            raise SourceError(f"{self.description}: cannot count rows: {_short(exc)}") from exc

    def read(self, state: StateView) -> Iterator[SourceItem]:
        c = self._c
        where, params = self._where(state)
        sql = f"SELECT * FROM {self._relation}{where} ORDER BY {self._order}"  # noqa: S608
        try:
            with self._engine.connect() as conn:
                result = conn.execution_options(
                    stream_results=True, yield_per=c.batch_size
                ).execute(text(sql), params)
                last: object = None
                since_checkpoint = 0
                for row in result:
                    values = row._mapping
                    item = self._record(dict(values))
                    yield item
                    wm = values.get(c.watermark)
                    if wm is not None:
                        last = wm
                    since_checkpoint += 1
                    if since_checkpoint >= c.batch_size and last is not None:
                        yield Checkpoint(name=WATERMARK_CHECKPOINT, value=_dump_watermark(last))
                        since_checkpoint = 0
                if last is not None:
                    yield Checkpoint(name=WATERMARK_CHECKPOINT, value=_dump_watermark(last))
        except SQLAlchemyError as exc:
            raise SourceError(f"{self.description}: {_short(exc)}") from exc

    def _record(self, values: Mapping[str, Any]) -> SourceItem:
        c = self._c
        missing = [col for col in (*c.key, c.watermark, *c.marker) if col not in values]
        if missing:
            raise SourceError(
                f"{self.description}: the result has no column(s) {', '.join(missing)} "
                f"(columns: {', '.join(values)})"
            )
        key_values = [values[k] for k in c.key]
        shown = ", ".join(f"{k}={v}" for k, v in zip(c.key, key_values, strict=True))
        location = f"{self._name} [{shown}]"
        if any(v is None for v in key_values):
            return Problem(location=location, message="a key column is NULL")
        key = "|".join(str(v) for v in key_values)
        marker = json.dumps([values[m] for m in c.marker], default=str, ensure_ascii=False)
        return SourceRecord(key=key, marker=marker, location=location, values=values)


def _dump_watermark(value: object) -> str:
    # Typed, so the next run binds the same kind of value (comparing a timestamp column
    # with a string is an error on PostgreSQL).
    if isinstance(value, dt.datetime):
        return json.dumps({"datetime": value.isoformat()})
    if isinstance(value, dt.date):
        return json.dumps({"date": value.isoformat()})
    if isinstance(value, bool):
        return json.dumps({"int": int(value)})
    if isinstance(value, int):
        return json.dumps({"int": value})
    if isinstance(value, float | decimal.Decimal):
        return json.dumps({"decimal": str(value)})
    return json.dumps({"str": str(value)})


def _load_watermark(stored: str) -> object:
    ((kind, value),) = json.loads(stored).items()
    if kind == "datetime":
        return dt.datetime.fromisoformat(value)
    if kind == "date":
        return dt.date.fromisoformat(value)
    if kind == "int":
        return int(value)
    if kind == "decimal":
        return decimal.Decimal(value)
    return str(value)


def _short(exc: SQLAlchemyError) -> str:
    # The first line: driver errors carry the statement and a documentation link after it.
    orig = getattr(exc, "orig", None)
    return (str(orig if orig is not None else exc).splitlines() or [type(exc).__name__])[0]
