"""The hub killed with SIGKILL in the middle of a department's backfill, twice, and restarted:
the adapter (a real `certhub adapter run --once`) replays what was not acknowledged, and the
hub ends with every certificate exactly once, each one audited, and an audit log that
`certhub audit verify` accepts.

The hub runs on its default SQLite file (WAL, synchronous=FULL), so the kill also lands in
the middle of SQLite transactions and group commits; the source is a department database of
20,000 registrations read through the SQL source.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from support.adapters import create_registrations, registration, sql_source, write_config
from support.processes import assert_audit_log_sound, free_port, start_adapter, stop_process
from support.served import ServedHub, prepare_deployment, serve, wait_for

from certhub.adapters.outbox import Outbox
from certhub.core.rpc.client import ClientTLS
from certhub.hub.audit.entry import OK, Action
from certhub.hub.demo.world import DemoWorld
from certhub.hub.pki import PkiPaths, issue_client_certificate
from certhub.hub.store.engine import make_engine, sqlite_url
from certhub.hub.store.models import AuditEntry, Certificate

BACKFILL_ROWS = 20_000
# Certificates stored when the hub is killed: once early, once past the middle, so the
# second restart also proves the first one left nothing half-done behind.
KILL_AT = (3_000, 11_000)
# The hub stays dead until the adapter has seen it gone and backed off (a "retrying in" warning in
# its log, certhub.adapters.pusher); that takes at most a call's deadline, given here with slack for
# a loaded machine.
DOWN_TIMEOUT = 60.0
# The backfill itself takes well under a minute here; the slack covers a loaded CI machine
# and the adapter's backoff after each kill (at most a few seconds).
BACKFILL_TIMEOUT = 240.0


def _stored(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Certificate)).scalar_one())


def _retries(adapter_log: Path) -> int:
    """Backoffs the adapter logged: it tried the hub and will try again."""
    if not adapter_log.exists():
        return 0
    return adapter_log.read_text(errors="replace").count("retrying in")


def test_hub_killed_twice_mid_backfill_ends_with_every_certificate_once_and_a_sound_log(
    tmp_path: Path, world: DemoWorld
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    db_url = sqlite_url(data_dir)
    engine = make_engine(db_url)
    prepare_deployment(data_dir, engine, world.registry_toml())
    amr = world.department_by_name("市场监督")
    source_url = f"sqlite:///{tmp_path / 'department.db'}"
    create_registrations(source_url, (registration(n) for n in range(BACKFILL_ROWS))).dispose()
    cert, key = issue_client_certificate(PkiPaths(data_dir), amr.principal)
    address = f"127.0.0.1:{free_port()}"
    files = write_config(
        tmp_path / "adapter",
        world=world,
        department=amr,
        address=address,
        tls=ClientTLS(ca=PkiPaths(data_dir).ca_cert, cert=cert, key=key),
        source=sql_source(source_url),
    )
    adapter_log = tmp_path / "adapter.log"

    hub: ServedHub = serve(data_dir, db_url, workers=1, address=address)
    adapter = start_adapter(files.config, log=adapter_log)
    stored_at_kill: list[int] = []
    try:
        for threshold in KILL_AT:
            wait_for(
                lambda t=threshold: _stored(engine) >= t or adapter.poll() is not None,
                timeout=BACKFILL_TIMEOUT,
                what=f"{threshold} certificates stored",
            )
            assert adapter.poll() is None, "the backfill ended before the hub could be killed"
            retries = _retries(adapter_log)
            hub.kill()
            stored_at_kill.append(_stored(engine))
            wait_for(
                lambda n=retries: _retries(adapter_log) > n,
                timeout=DOWN_TIMEOUT,
                what="the adapter to see the hub gone and back off",
            )
            hub = serve(data_dir, db_url, workers=1, address=address)
        returncode = adapter.wait(timeout=BACKFILL_TIMEOUT)
        assert returncode == 0, adapter_log.read_text(errors="replace")
    finally:
        stop_process(adapter)
        hub.kill()

    # The kills really landed mid-backfill.
    assert all(n < BACKFILL_ROWS for n in stored_at_kill), stored_at_kill

    # Every registration exactly once: no duplicate certificate, no missing number.
    with engine.connect() as conn:
        rows = conn.execute(select(Certificate.certificate_id, Certificate.envelope)).all()
        push_leaves = (
            conn.execute(
                select(AuditEntry.leaf).where(
                    AuditEntry.action == Action.PUSH.value, AuditEntry.outcome == OK
                )
            )
            .scalars()
            .all()
        )
    assert len(rows) == BACKFILL_ROWS
    assert len({cid for cid, _ in rows}) == BACKFILL_ROWS
    numbers = {
        json.loads(base64.b64decode(json.loads(envelope)["payload"]))["number"]
        for _, envelope in rows
    }
    assert numbers == {f"GL{n:08d}" for n in range(BACKFILL_ROWS)}

    # Every stored certificate has its push in the audit log (stored and audited are one
    # transaction, even when the process dies in between).
    audited = {cid for leaf in push_leaves for cid in json.loads(leaf)["certificate_ids"]}
    assert {cid for cid, _ in rows} <= audited

    # The adapter's own books agree: everything acknowledged, nothing rejected or pending.
    with Outbox(files.outbox) as outbox:
        status = outbox.status()
    assert (status.acked, status.rejected, status.depth) == (BACKFILL_ROWS, 0, 0)

    assert assert_audit_log_sound(engine, data_dir=data_dir, db_url=db_url) >= BACKFILL_ROWS
    engine.dispose()
