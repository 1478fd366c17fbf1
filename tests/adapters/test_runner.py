"""An adapter over a real department database (SQLite and PostgreSQL) pushing into a real
hub over mTLS: backfill, updates, revocations, malformed rows, continuous polling."""

from __future__ import annotations

import datetime as dt
import io
import json
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text, update
from support.adapters import (
    AdapterFiles,
    create_registrations,
    registration,
    registrations,
    sql_source,
    write_config,
)
from support.hubs import RunningHub

from certhub.adapters import Adapter, load_config
from certhub.adapters.progress import Progress
from certhub.hub.demo.world import DemoDepartment, DemoWorld, enterprise
from certhub.signing import (
    CERTIFICATE_PAYLOAD_TYPE,
    KeyStatus,
    TrustedKey,
    parse_envelope,
    verify_envelope,
)

BACKFILL_ROWS = 10_000


def _config(
    running_hub: RunningHub, world: DemoWorld, amr: DemoDepartment, root: Path, url: str
) -> AdapterFiles:
    return write_config(
        root / "adapter",
        world=world,
        department=amr,
        address=running_hub.address,
        tls=running_hub.tls_for(amr.principal),
        source=sql_source(url),
    )


def _hub_rows(running_hub: RunningHub) -> list[tuple[str, int, bool, bytes]]:
    with running_hub.engine.connect() as conn:
        return [
            (r[0], r[1], bool(r[2]), bytes(r[3]))
            for r in conn.execute(
                text("SELECT certificate_id, version, is_current, envelope FROM certificates")
            )
        ]


def _window_get(running_hub: RunningHub, world: DemoWorld, certificate_id: str, holder: str) -> str:
    item = world.item_by_name("公共场所卫生许可（新办）")
    with running_hub.client("gulou-service-centre") as window:
        return window.get(
            certificate_id,
            id_type="USCC",
            holder_id=holder,
            service_item=item.code,
            case_number="GL-TEST-1",
        ).status


@pytest.mark.slow
def test_backfill_of_10000_rows_lands_each_row_once_with_valid_signatures(
    running_hub: RunningHub, world: DemoWorld, amr: DemoDepartment, tmp_path: Path
) -> None:
    # One source kind is enough here: the time goes into the hub, and the PostgreSQL source
    # (server-side cursor, batches, watermark) has its own tests in sources/test_sql.py and
    # below.
    source_url = f"sqlite:///{tmp_path / 'department.db'}"
    create_registrations(source_url, (registration(n) for n in range(BACKFILL_ROWS)))
    files = _config(running_hub, world, amr, tmp_path, source_url)

    report = Adapter(load_config(files.config)).run_once()

    assert report.counts.pushes == BACKFILL_ROWS
    assert (report.status.acked, report.status.rejected, report.status.depth) == (
        BACKFILL_ROWS,
        0,
        0,
    )
    rows = _hub_rows(running_hub)
    assert len(rows) == BACKFILL_ROWS
    assert {version for _, version, _, _ in rows} == {1}
    trusted = {
        amr.key.public_key.key_id: TrustedKey(
            public_key=amr.key.public_key,
            owner=amr.code,
            not_before=dt.date(2020, 1, 1),
            not_after=None,
            status=KeyStatus.ACTIVE,
        )
    }
    numbers = set()
    for _, _, _, envelope in rows:
        parsed = parse_envelope(envelope)
        payload = json.loads(parsed.payload)
        verification = verify_envelope(
            parsed,
            expected_payload_type=CERTIFICATE_PAYLOAD_TYPE,
            keys=trusted,
            owner=amr.code,
            signed_on=dt.date.fromisoformat(payload["issued_on"]),
        )
        assert verification.ok, verification.reasons
        numbers.add(payload["number"])
    assert numbers == {f"GL{n:08d}" for n in range(BACKFILL_ROWS)}

    # A second pass finds nothing new: the watermark and the change markers hold.
    again = Adapter(load_config(files.config)).run_once()
    assert again.counts.pushes == 0
    assert len(_hub_rows(running_hub)) == BACKFILL_ROWS


def test_updated_row_supersedes_and_cancelled_row_is_revoked(
    running_hub: RunningHub, world: DemoWorld, amr: DemoDepartment, tmp_path: Path, source_url: str
) -> None:
    engine = create_registrations(source_url, (registration(n) for n in range(5)))
    files = _config(running_hub, world, amr, tmp_path, source_url)
    Adapter(load_config(files.config)).run_once()
    first = {cid: current for cid, _, current, _ in _hub_rows(running_hub)}
    assert len(first) == 5

    with engine.begin() as conn:
        conn.execute(
            update(registrations)
            .where(registrations.c.reg_no == "GL00000001")
            .values(address="福州市鼓楼区杨桥东路8号", row_version=100)
        )
        conn.execute(
            update(registrations)
            .where(registrations.c.reg_no == "GL00000002")
            .values(status="注销", row_version=101)
        )
    report = Adapter(load_config(files.config)).run_once()
    assert (report.counts.pushes, report.counts.revocations) == (1, 1)
    assert report.status.rejected == 0

    rows = _hub_rows(running_hub)
    assert len(rows) == 6
    (old_id,) = [
        cid for cid, version, _, env in rows if version == 1 and b"GL00000001" in _payload(env)
    ]
    (new_id, new_env) = next((cid, env) for cid, version, _, env in rows if version == 2)
    assert json.loads(_payload(new_env))["fields"]["住所"] == "福州市鼓楼区杨桥东路8号"
    holder1, holder2 = enterprise(1).holder.id, enterprise(2).holder.id
    assert _window_get(running_hub, world, new_id, holder1) == "VALID"
    assert _window_get(running_hub, world, old_id, holder1) == "SUPERSEDED"
    (cancelled,) = [cid for cid, _, _, env in rows if b"GL00000002" in _payload(env)]
    assert _window_get(running_hub, world, cancelled, holder2) == "REVOKED"
    engine.dispose()


def _payload(envelope: bytes) -> bytes:
    return parse_envelope(envelope).payload


def test_malformed_rows_are_reported_with_their_location_and_the_rest_goes_through(
    running_hub: RunningHub, world: DemoWorld, amr: DemoDepartment, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'department.db'}"
    rows = [registration(n) for n in range(6)]
    good_id = rows[1]["uscc"]
    assert isinstance(good_id, str)
    bad_check = "0" if good_id[-1] != "0" else "1"
    rows[1]["uscc"] = good_id[:-1] + bad_check  # wrong GB 32100 check character
    rows[2]["issue_date"] = None  # no issue date
    rows[3]["licence_type"] = "烟草专卖零售许可证"  # a type this adapter has no code for
    create_registrations(url, rows)
    files = _config(running_hub, world, amr, tmp_path, url)

    report = Adapter(load_config(files.config)).run_once()

    assert report.status.acked == 3
    locations = {p[1]: p[2] for p in report.status.recent_problems}
    assert set(locations) == {
        "business_registration [reg_no=GL00000002]",
        "business_registration [reg_no=GL00000003]",
    }
    assert (
        "issued_on: missing (column 'issue_date')"
        in locations["business_registration [reg_no=GL00000002]"]
    )
    assert (
        "unknown certificate type '烟草专卖零售许可证'"
        in locations["business_registration [reg_no=GL00000003]"]
    )
    (rejected,) = report.status.rejected_items
    assert rejected.location == "business_registration [reg_no=GL00000001]"
    assert rejected.code == "INVALID_ARGUMENT"
    assert "payload.holder.id" in rejected.message
    hub_numbers = {json.loads(_payload(env))["number"] for _, _, _, env in _hub_rows(running_hub)}
    assert hub_numbers == {"GL00000000", "GL00000004", "GL00000005"}


def test_continuous_run_picks_up_new_rows_and_stops_cleanly(
    running_hub: RunningHub, world: DemoWorld, amr: DemoDepartment, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'department.db'}"
    engine = create_registrations(url, (registration(n) for n in range(3)))
    files = _config(running_hub, world, amr, tmp_path, url)
    adapter = Adapter(load_config(files.config))
    runner = threading.Thread(target=adapter.run_forever)
    runner.start()
    try:
        _wait_for(lambda: len(_hub_rows(running_hub)) == 3)
        with engine.begin() as conn:
            conn.execute(registrations.insert(), [registration(n) for n in range(3, 7)])
        _wait_for(lambda: len(_hub_rows(running_hub)) == 7)
    finally:
        adapter.stop.set()
        runner.join(timeout=10)
    assert not runner.is_alive()
    assert adapter.status().depth == 0
    engine.dispose()


def test_progress_counts_only_what_the_pass_signs_and_ends_at_100_percent(
    running_hub: RunningHub, world: DemoWorld, amr: DemoDepartment, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'department.db'}"
    engine = create_registrations(url, (registration(n) for n in range(10)))
    files = _config(running_hub, world, amr, tmp_path, url)
    Adapter(load_config(files.config)).run_once()
    bad = enterprise(3).holder.id
    bad = bad[:-1] + ("0" if bad[-1] != "0" else "1")
    with engine.begin() as conn:
        for n, values in (
            (1, {"address": "福州市鼓楼区杨桥东路8号"}),
            (2, {"address": "福州市鼓楼区杨桥东路9号"}),
            (3, {"uscc": bad}),  # the hub rejects the wrong check character
        ):
            conn.execute(
                update(registrations)
                .where(registrations.c.reg_no == f"GL{n:08d}")
                .values(row_version=100 + n, **values)
            )
    engine.dispose()
    # The watermark re-reads the last row of the first pass too (>=): 4 rows, 3 changed.
    progress = Progress(stream=io.StringIO(), tty=False)
    report = Adapter(load_config(files.config), progress=progress).run_once()
    assert (report.counts.read, report.counts.unchanged, report.counts.pushes) == (4, 1, 3)
    line = progress.line()
    assert "3/3 100.0%" in line
    assert "(2 acknowledged, 1 rejected)" in line


def _wait_for(condition: object, timeout: float = 20.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
