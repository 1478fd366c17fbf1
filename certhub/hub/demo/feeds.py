"""The demo's department adapters: the market regulator fed from its registration database
(a real `sql` source, SQLite) and the health bureau from a folder of export files (a real
`files` source, CSV with a BOM and JSON Lines), both through ``adapters`` exactly as a
department would run them."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

from certhub.adapters import Adapter, load_config
from certhub.adapters.runner import describe
from certhub.hub.demo.world import DemoDepartment, DemoWorld, enterprise
from certhub.hub.pki import PkiPaths, issue_client_certificate
from certhub.hub.runtime import DEFAULT_ADDRESS

__all__ = ["DemoFeeds"]

_AMR_TYPES = ("营业执照", "食品经营许可证", "药品经营许可证")
_HEALTH_TYPES = ("公共场所卫生许可证", "医疗机构执业许可证")
_MAPPING = """
[mapping]
type = "licence_type"
number = "licence_no"
holder_id_type = { value = "USCC" }
holder_id = "uscc"
holder_name = "company_name"
issued_on = { column = "issue_date", formats = ["%Y-%m-%d", "%Y/%m/%d"] }
valid_until = { column = "expiry_date", formats = ["%Y-%m-%d", "%Y/%m/%d"] }
status = "status"
revoked_values = ["注销", "吊销"]

[mapping.fields]
"住所" = "address"
"经营范围" = "scope"
"""
_COLUMNS = (
    "licence_no",
    "licence_type",
    "uscc",
    "company_name",
    "address",
    "scope",
    "issue_date",
    "expiry_date",
    "status",
    "updated_at",
)


def _q(text: object) -> str:
    return json.dumps(str(text), ensure_ascii=False)


class DemoFeeds:
    """Writes each department's data and adapter config under ``root`` and runs them."""

    def __init__(
        self,
        *,
        world: DemoWorld,
        root: Path,
        pki: PkiPaths,
        address: str,
        holders: int,
        out: Callable[[str], None],
    ) -> None:
        self._world = world
        self._root = root / "adapters"
        self._pki = pki
        self._address = address
        self._holders = holders
        self._out = out
        self.amr = world.department_by_name("市场监督")
        self.health = world.department_by_name("卫生健康")
        self._amr_db = self._root / "amr" / "registration.db"

    @property
    def departments(self) -> frozenset[str]:
        return frozenset({self.amr.code, self.health.code})

    def run(self) -> None:
        self._write_registration_db()
        self._write_health_exports()
        self._run("amr", self.amr, f"sql {self._amr_db.name}")
        self._run("health", self.health, "files exports/")

    def cancel(self, number: str, *, status: str = "吊销") -> None:
        """The regulator cancels a licence in its own database; the adapter revokes it."""
        with contextlib.closing(sqlite3.connect(self._amr_db)) as db, db:
            db.execute(
                "UPDATE business_registration SET status = ?, "
                "updated_at = (SELECT max(updated_at) + 1 FROM business_registration) "
                "WHERE licence_no = ?",
                (status, number),
            )
        self._run("amr", self.amr, f"sql {self._amr_db.name} ({number} {status})")

    def _rows(self, types: tuple[str, ...], prefix: str) -> list[tuple[object, ...]]:
        rows: list[tuple[object, ...]] = []
        for n in range(self._holders):
            company = enterprise(n)
            issued = dt.date(2021, 3, 1) + dt.timedelta(days=17 * n)
            for k, name in enumerate(types):
                if k and n % len(types) != k % len(types):
                    continue  # every company has the first type, a third or half the others
                years = self._world.type_by_name(name).validity_years
                expiry = None if years is None else issued.replace(year=issued.year + years)
                rows.append(
                    (
                        f"{prefix}{k}{n:06d}",
                        name,
                        company.holder.id,
                        company.name,
                        f"福州市鼓楼区五四路{n + 1}号",
                        "预包装食品销售" if prefix == "SC" else "公共场所卫生",
                        issued,
                        expiry,
                        "存续",
                        len(rows) + 1,
                    )
                )
        return rows

    def _write_registration_db(self) -> None:
        self._amr_db.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.closing(sqlite3.connect(self._amr_db)) as db, db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS business_registration (licence_no TEXT PRIMARY KEY, "
                "licence_type TEXT, uscc TEXT, company_name TEXT, address TEXT, scope TEXT, "
                "issue_date TEXT, expiry_date TEXT, status TEXT, updated_at INTEGER)"
            )
            db.executemany(
                "INSERT OR IGNORE INTO business_registration VALUES (?,?,?,?,?,?,?,?,?,?)",
                [
                    tuple(v.isoformat() if isinstance(v, dt.date) else v for v in row)
                    for row in self._rows(_AMR_TYPES, "SC")
                ],
            )

    def _write_health_exports(self) -> None:
        exports = self._root / "health" / "exports"
        exports.mkdir(parents=True, exist_ok=True)
        rows = self._rows(_HEALTH_TYPES, "WS")
        half = len(rows) // 2
        lines = [",".join(_COLUMNS)]
        for row in rows[:half]:
            cells = [v.strftime("%Y/%m/%d") if isinstance(v, dt.date) else v for v in row]
            lines.append(",".join("" if c is None else str(c) for c in cells))
        # A nightly CSV export as the permit system writes it: UTF-8 with a BOM, CRLF.
        (exports / "2026-11-27.csv").write_bytes("\r\n".join(lines).encode("utf-8-sig"))
        jsonl = [
            json.dumps(
                dict(
                    zip(
                        _COLUMNS,
                        (v.isoformat() if isinstance(v, dt.date) else v for v in row),
                        strict=True,
                    )
                ),
                ensure_ascii=False,
            )
            for row in rows[half:]
        ]
        (exports / "2026-11-28.jsonl").write_text("\n".join(jsonl) + "\n", encoding="utf-8")

    def _run(self, short: str, department: DemoDepartment, what: str) -> None:
        directory = self._root / short
        config = directory / f"{short}.toml"
        if not config.exists():
            self._write_config(short, department, directory, config)
        # The config names the address `certhub serve --data-dir` listens on, so a kept demo
        # dir's adapters work against it; this run's hub is on an ephemeral port.
        loaded = load_config(config)
        loaded = dataclasses.replace(
            loaded, hub=dataclasses.replace(loaded.hub, address=self._address)
        )
        adapter = Adapter(loaded)
        try:
            report = adapter.run_once()
        finally:
            adapter.close()
        self._out(f"adapter    {department.name} ← {what}: {describe(report)}")

    def _write_config(
        self, short: str, department: DemoDepartment, directory: Path, config: Path
    ) -> None:
        key = directory / "department.pem"
        key.write_bytes(department.key.to_pem())
        key.chmod(0o600)
        cert, client_key = issue_client_certificate(self._pki, department.principal)
        if short == "amr":
            source = [
                'kind = "sql"',
                f"url = {_q('sqlite:///' + str(self._amr_db))}",
                'table = "business_registration"',
                'key = ["licence_no"]',
                'watermark = "updated_at"',
            ]
        else:
            source = ['kind = "files"', 'path = "exports"', 'key = ["licence_no"]']
        lines = [
            "[department]",
            f"code = {_q(department.code)}",
            f"name = {_q(department.name)}",
            'signing_key = "department.pem"',
            "",
            "[hub]",
            f"address = {_q(DEFAULT_ADDRESS)}",
            f"ca = {_q(self._pki.ca_cert)}",
            f"cert = {_q(cert)}",
            f"key = {_q(client_key)}",
            "",
            "[source]",
            *source,
            "",
        ]
        for t in self._world.types.values():
            if t.issuer == department.code:
                lines += [
                    "[[types]]",
                    f"code = {_q(t.code)}",
                    f"name = {_q(t.name)}",
                    f"kind = {_q(t.kind)}",
                    f"values = [{_q(t.name)}]",
                    "",
                ]
        config.write_text("\n".join(lines) + _MAPPING, encoding="utf-8")
