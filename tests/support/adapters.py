"""Department source data and adapter configs for the adapter tests and the benchmark."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Column, Date, Integer, MetaData, String, Table, create_engine, insert
from sqlalchemy.engine import Engine

from certhub.core.rpc.client import ClientTLS
from certhub.hub.demo.world import DemoDepartment, DemoWorld, enterprise
from certhub.hub.grpc.server import ServerTLS, build_server
from certhub.hub.runtime import build_hub
from support.hubs import RunningHub
from support.served import wait_for

REGISTRATIONS = "business_registration"
metadata = MetaData()
registrations = Table(
    REGISTRATIONS,
    metadata,
    Column("reg_no", String(32), primary_key=True),
    Column("licence_type", String(32), nullable=False),
    Column("uscc", String(32), nullable=False),
    Column("company_name", String(128), nullable=False),
    Column("address", String(256), nullable=False),
    Column("scope", String(512), nullable=False),
    Column("issue_date", Date, nullable=True),
    Column("expiry_date", Date, nullable=True),
    Column("status", String(16), nullable=False),
    Column("row_version", Integer, nullable=False),
)


def registration(
    n: int, *, licence_type: str = "营业执照", status: str = "存续"
) -> dict[str, object]:
    company = enterprise(n)
    issued = dt.date(2021, 1, 1) + dt.timedelta(days=n % 1000)
    return {
        "reg_no": f"GL{n:08d}",
        "licence_type": licence_type,
        "uscc": company.holder.id,
        "company_name": company.name,
        "address": f"福州市鼓楼区五四路{n % 300 + 1}号",
        "scope": "预包装食品销售",
        "issue_date": issued,
        "expiry_date": None if licence_type == "营业执照" else issued.replace(year=issued.year + 5),
        "status": status,
        "row_version": n + 1,
    }


def create_registrations(
    url: str, rows: Iterable[dict[str, object]], *, chunk: int = 5000
) -> Engine:
    """The department's table, filled; returns an engine for later updates."""
    engine = create_engine(url)
    metadata.create_all(engine)
    batch: list[dict[str, object]] = []
    with engine.begin() as conn:
        for row in rows:
            batch.append(row)
            if len(batch) >= chunk:
                conn.execute(insert(registrations), batch)
                batch = []
        if batch:
            conn.execute(insert(registrations), batch)
    return engine


@dataclass(frozen=True, kw_only=True)
class AdapterFiles:
    config: Path
    outbox: Path


def _q(text: str | Path) -> str:
    return json.dumps(str(text), ensure_ascii=False)


def write_config(
    directory: Path,
    *,
    world: DemoWorld,
    department: DemoDepartment,
    address: str,
    tls: ClientTLS,
    source: str,
    mapping: str | None = None,
    extra_types: Iterable[tuple[str, str, str, list[str]]] = (),
    poll_seconds: float = 0.2,
    max_in_flight: int = 256,
) -> AdapterFiles:
    """A complete adapter config for ``department`` (its key written beside it)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / "department.pem"
    key.write_bytes(department.key.to_pem())
    types = [t for t in world.types.values() if t.issuer == department.code]
    lines = [
        "[department]",
        f"code = {_q(department.code)}",
        f"name = {_q(department.name)}",
        f"signing_key = {_q(key)}",
        "",
        "[hub]",
        f"address = {_q(address)}",
        f"ca = {_q(tls.ca)}",
        f"cert = {_q(tls.cert)}",
        f"key = {_q(tls.key)}",
        "",
        "[outbox]",
        f"max_in_flight = {max_in_flight}",
        f"poll_seconds = {poll_seconds}",
        "",
        source,
        "",
    ]
    for t in types:
        lines += [
            "[[types]]",
            f"code = {_q(t.code)}",
            f"name = {_q(t.name)}",
            f"kind = {_q(str(t.kind))}",
            f"values = [{_q(t.name)}]",
            "",
        ]
    for code, name, kind, values in extra_types:
        lines += [
            "[[types]]",
            f"code = {_q(code)}",
            f"name = {_q(name)}",
            f"kind = {_q(kind)}",
            f"values = [{', '.join(_q(v) for v in values)}]",
            "",
        ]
    lines.append(mapping or REGISTRATION_MAPPING)
    config = directory / "adapter.toml"
    config.write_text("\n".join(lines), encoding="utf-8")
    return AdapterFiles(config=config, outbox=directory / "adapter.outbox.db")


REGISTRATION_MAPPING = """
[mapping]
type = "licence_type"
number = "reg_no"
holder_id_type = { value = "USCC" }
holder_id = "uscc"
holder_name = "company_name"
issued_on = { column = "issue_date", formats = ["%Y-%m-%d", "%Y/%m/%d", "%Y%m%d"] }
valid_until = { column = "expiry_date", formats = ["%Y-%m-%d", "%Y/%m/%d", "%Y%m%d"] }
status = "status"
revoked_values = ["注销", "吊销"]

[mapping.fields]
"住所" = "address"
"经营范围" = "scope"
"""


def sqlite_department(
    hub: RunningHub,
    world: DemoWorld,
    department: DemoDepartment,
    tmp_path: Path,
    rows: Iterable[dict[str, object]],
    **options: object,
) -> AdapterFiles:
    """A department's SQLite registration table holding ``rows``, and the config of its
    adapter pushing to ``hub`` (``options`` go to ``write_config``)."""
    url = f"sqlite:///{tmp_path / 'department.db'}"
    create_registrations(url, rows).dispose()
    return write_config(
        tmp_path / "adapter",
        world=world,
        department=department,
        address=hub.address,
        tls=hub.tls_for(department.principal),
        source=sql_source(url),
        **options,  # type: ignore[arg-type]
    )


def sql_source(url: str, *, table: str = REGISTRATIONS, batch_size: int = 500) -> str:
    return "\n".join(
        [
            "[source]",
            'kind = "sql"',
            f"url = {_q(url)}",
            f"table = {_q(table)}",
            'key = ["reg_no"]',
            'watermark = "row_version"',
            f"batch_size = {batch_size}",
        ]
    )


def files_source(path: Path, *, encoding: str = "utf-8") -> str:
    return "\n".join(
        [
            "[source]",
            'kind = "files"',
            f"path = {_q(path)}",
            f"encoding = {_q(encoding)}",
            'key = ["reg_no"]',
        ]
    )


def csv_lines(rows: Iterable[dict[str, object]]) -> Iterator[str]:
    """CSV text lines (header first) of registration rows; dates as YYYY/MM/DD."""
    columns = [c.name for c in registrations.columns]
    yield ",".join(columns)
    for row in rows:
        cells = []
        for c in columns:
            value = row[c]
            if isinstance(value, dt.date):
                value = value.strftime("%Y/%m/%d")
            cells.append("" if value is None else str(value))
        yield ",".join(cells)


def restart_hub(
    running: RunningHub, *, down_until: Callable[[], object], timeout: float, what: str
) -> None:
    """Stop the hub's server and start a new hub process state on the same port and database
    (what an operator's restart looks like to an adapter); the hub stays down until
    ``down_until()`` holds (``what``, at most ``timeout`` seconds)."""
    port = running.server.port
    running.server.stop(grace=None)
    running.hub.close()
    wait_for(down_until, timeout=timeout, what=what)
    pki = running.config.pki
    hub = build_hub(running.config, running.engine)
    running.hub = hub
    running.server = build_server(
        hub,
        address=f"127.0.0.1:{port}",
        tls=ServerTLS(cert=pki.server_cert, key=pki.server_key, client_ca=pki.ca_cert),
    )


def outbox_last_error(path: Path) -> str | None:
    """The adapter's last noted error (its outbox's meta row), as an operator would read it."""
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as db:
        row = db.execute("SELECT value FROM meta WHERE name = 'last_error'").fetchone()
    return None if row is None else str(row[0])


def outbox_counts(path: Path) -> dict[str, int]:
    """Outbox rows by state, read the way an operator's sqlite3 shell would."""
    if not path.exists():
        return {}
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as db:
        try:
            return dict(db.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall())
        except sqlite3.OperationalError:  # the adapter is still creating its schema
            return {}
