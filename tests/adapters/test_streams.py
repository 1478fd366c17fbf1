"""Parallel push streams against a real hub over mTLS: each stream on its own connection,
every lineage's versions and revocation in signing order, a cut stream retried alone."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
from sqlalchemy import text, update
from support.adapters import (
    AdapterFiles,
    create_registrations,
    outbox_counts,
    registration,
    registrations,
    sql_source,
    write_config,
)
from support.hubs import RunningHub
from support.tcp_proxy import Relayed, tcp_relay

from certhub.adapters import Adapter, AdapterConfig, PassReport, load_config
from certhub.adapters.identifier import stream_key
from certhub.adapters.outbox import Outbox
from certhub.adapters.producer import Producer, load_signing_key
from certhub.adapters.sources import open_source
from certhub.core.identifier import lineage_of
from certhub.hub.demo.world import DemoDepartment, DemoWorld

STREAMS = 3


def _config(
    running_hub: RunningHub,
    world: DemoWorld,
    amr: DemoDepartment,
    tmp_path: Path,
    url: str,
    *,
    address: str,
    streams: int = STREAMS,
) -> tuple[AdapterFiles, AdapterConfig]:
    files = write_config(
        tmp_path / "adapter",
        world=world,
        department=amr,
        address=address,
        tls=running_hub.tls_for(amr.principal),
        source=sql_source(url),
    )
    config = load_config(files.config)
    return files, dataclasses.replace(
        config, outbox=dataclasses.replace(config.outbox, streams=streams)
    )


def _hub_count(running_hub: RunningHub) -> int:
    with running_hub.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM certificates")).scalar_one())


def _arrival_order(outbox: Path) -> dict[str, list[tuple[str, int, int]]]:
    """Per lineage, its items in outbox (signing) order: (kind, version, hub audit index)."""
    with Outbox(outbox) as box:
        rows = box._db.execute(
            "SELECT kind, certificate_id, version, audit_index FROM outbox "
            "WHERE state = 'acked' ORDER BY id"
        ).fetchall()
    lineages: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
    for kind, certificate_id, version, audit_index in rows:
        lineages[lineage_of(certificate_id)].append((kind, version, audit_index))
    return lineages


@pytest.mark.slow
def test_each_stream_has_its_own_connection_and_carries_its_share(
    running_hub: RunningHub, world: DemoWorld, amr: DemoDepartment, tmp_path: Path
) -> None:
    rows = 1500
    url = f"sqlite:///{tmp_path / 'department.db'}"
    create_registrations(url, (registration(n) for n in range(rows))).dispose()
    with tcp_relay(running_hub.address) as relay:
        files, config = _config(running_hub, world, amr, tmp_path, url, address=relay.address)
        adapter = Adapter(config)
        try:
            report = adapter.run_once()
        finally:
            adapter.close()
        connections = relay.snapshot()

    assert (report.status.acked, report.status.rejected, report.status.depth) == (rows, 0, 0)
    assert _hub_count(running_hub) == rows
    # One TCP connection per stream, none shared, none reconnected.
    assert len(connections) == STREAMS
    # The certificates hash evenly over the streams; each connection carried about a third
    # of the envelopes (~1.5 KB each), not just a TLS handshake and an empty stream.
    with Outbox(files.outbox) as box:
        ids = [r[0] for r in box._db.execute("SELECT certificate_id FROM outbox")]
    shares = [sum(1 for i in ids if stream_key(i) % STREAMS == s) for s in range(STREAMS)]
    assert min(shares) > rows / STREAMS / 2
    assert all(c.bytes_up > 400 * min(shares) for c in connections), [
        c.bytes_up for c in connections
    ]


def _pending_versions(config: AdapterConfig, url: str, *, keys: int) -> int:
    """Sign four versions of ``keys`` records and a revocation of every fourth into the
    outbox before any push (a backlog, as after a hub outage); returns the item count."""
    engine = create_registrations(url, (registration(n) for n in range(keys)))
    key = load_signing_key(config)
    source = open_source(config.source)
    try:
        for change in range(4):
            if change:
                with engine.begin() as conn:
                    for n in range(keys):
                        values: dict[str, object] = {
                            "address": f"福州市鼓楼区五四路{change}号",
                            "row_version": keys * change + n + 1,
                        }
                        if change == 3 and n % 4 == 0:
                            values["status"] = "注销"
                        conn.execute(
                            update(registrations)
                            .where(registrations.c.reg_no == f"GL{n:08d}")
                            .values(**values)
                        )
            Producer(config=config, source=source, keys=key, stop=threading.Event()).run()
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()
        engine.dispose()
    return outbox_counts(config.outbox.path)["pending"]


@pytest.mark.slow
def test_versions_and_revocation_of_each_lineage_arrive_in_signing_order(
    running_hub: RunningHub, world: DemoWorld, amr: DemoDepartment, tmp_path: Path
) -> None:
    keys = 200
    url = f"sqlite:///{tmp_path / 'department.db'}"
    with tcp_relay(running_hub.address) as relay:
        files, config = _config(running_hub, world, amr, tmp_path, url, address=relay.address)
        # Three updated versions for every key, and the fourth cancels every fourth record.
        pending = _pending_versions(config, url, keys=keys)
        assert pending == keys * 3 + keys * 3 // 4 + keys // 4
        adapter = Adapter(config)
        reports: list[PassReport] = []
        runner = threading.Thread(target=lambda: reports.append(adapter.run_once()))
        runner.start()
        held: Relayed | None = None
        try:
            # Hold one stream back while the others go on: a lineage spread over streams
            # would now have later versions stored before earlier ones.
            _wait_for(relay.snapshot, timeout=30, what="a first connection")
            held = relay.snapshot()[0]
            held.pause()
            _wait_for(
                lambda: outbox_counts(files.outbox).get("acked", 0) > pending // 3,
                timeout=60,
                what="the other streams to make progress",
            )
            held.resume()
            runner.join(timeout=120)
        finally:
            if held is not None:
                held.resume()
            adapter.stop.set()
            runner.join(timeout=10)
            adapter.close()

    (report,) = reports
    assert (report.status.acked, report.status.rejected, report.status.depth) == (pending, 0, 0)
    lineages = _arrival_order(files.outbox)
    assert len(lineages) == keys
    for items in lineages.values():
        kinds = [kind for kind, _, _ in items]
        versions = [version for kind, version, _ in items if kind == "push"]
        audit = [index for _, _, index in items]
        assert versions == sorted(versions)
        assert len(versions) in (3, 4)
        # The hub stored and audited them in the order they were signed.
        assert audit == sorted(audit), items
        if kinds[-1] == "revoke":
            assert len(versions) == 3
    # And every lineage ended up with its highest version current.
    with running_hub.engine.connect() as conn:
        current = conn.execute(
            text("SELECT max(version) FROM certificates WHERE is_current GROUP BY lineage")
        ).scalars()
        assert set(current) == {3, 4}


def _wait_for(condition: object, *, timeout: float, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.mark.slow
def test_a_cut_stream_reconnects_alone_and_nothing_is_lost_or_reordered(
    running_hub: RunningHub, world: DemoWorld, amr: DemoDepartment, tmp_path: Path
) -> None:
    keys = 400
    url = f"sqlite:///{tmp_path / 'department.db'}"
    with tcp_relay(running_hub.address) as relay:
        files, config = _config(running_hub, world, amr, tmp_path, url, address=relay.address)
        pending = _pending_versions(config, url, keys=keys)
        adapter = Adapter(config)
        reports: list[PassReport] = []
        runner = threading.Thread(target=lambda: reports.append(adapter.run_once()))
        runner.start()
        try:
            _wait_for(
                lambda: outbox_counts(files.outbox).get("acked", 0) > pending // 4,
                timeout=60,
                what="a quarter acknowledged",
            )
            first = relay.snapshot()
            assert len(first) == STREAMS
            first[0].cut()
            acked_at_cut = outbox_counts(files.outbox).get("acked", 0)
            runner.join(timeout=120)
        finally:
            adapter.stop.set()
            runner.join(timeout=10)
            adapter.close()
        connections = relay.snapshot()

    assert not runner.is_alive()
    assert acked_at_cut < pending, "the stream was cut too late to test anything"
    (report,) = reports
    assert (report.status.acked, report.status.rejected, report.status.depth) == (pending, 0, 0)
    # Only the cut stream reconnected.
    assert len(connections) == STREAMS + 1
    assert report.status.last_error is not None
    assert f" of {STREAMS}: " in report.status.last_error
    for items in _arrival_order(files.outbox).values():
        audit = [index for _, _, index in items]
        assert audit == sorted(audit), items
    with running_hub.engine.connect() as conn:
        stored = conn.execute(text("SELECT count(*) FROM certificates")).scalar_one()
        revoked = conn.execute(text("SELECT count(*) FROM revocations")).scalar_one()
    assert (stored, revoked) == (keys * 3 + keys * 3 // 4, keys // 4)
