"""The pusher against a hub that goes away and comes back."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from sqlalchemy import text
from support.adapters import (
    AdapterFiles,
    create_registrations,
    outbox_counts,
    outbox_last_error,
    registration,
    restart_hub,
    sql_source,
    sqlite_department,
    write_config,
)
from support.hubs import RunningHub
from support.tcp_proxy import TcpRelay, tcp_relay

from certhub.adapters import Adapter, PassReport, load_config, pusher
from certhub.adapters.errors import HubRefused
from certhub.adapters.outbox import ItemKind, ItemState, OutboxItem
from certhub.adapters.pusher import Backoff, _push_settlement
from certhub.hub.demo.world import DemoDepartment, DemoWorld
from certhub.signing import parse_envelope
from certhub.v1 import ingest_pb2

ROWS = 3000


@pytest.mark.slow
def test_hub_restarted_halfway_all_rows_arrive_none_twice(
    running_hub: RunningHub, world: DemoWorld, amr: DemoDepartment, tmp_path: Path
) -> None:
    files = sqlite_department(
        running_hub,
        world,
        amr,
        tmp_path,
        (registration(n) for n in range(ROWS)),
    )
    adapter = Adapter(load_config(files.config))
    reports: list[PassReport] = []
    runner = threading.Thread(target=lambda: reports.append(adapter.run_once()), daemon=True)
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while outbox_counts(files.outbox).get("acked", 0) < ROWS // 3:
            assert time.monotonic() < deadline
            assert runner.is_alive()
            time.sleep(0.02)

        # Down until the adapter has noticed: its outbox notes the error it will retry.
        noted = outbox_last_error(files.outbox)
        restart_hub(
            running_hub,
            down_until=lambda: outbox_last_error(files.outbox) != noted,
            timeout=60,
            what="the adapter to note the hub gone",
        )
        acked_while_down = outbox_counts(files.outbox).get("acked", 0)
        assert acked_while_down < ROWS, "the hub went down too late to test anything"

        runner.join(timeout=60)
    finally:
        adapter.stop.set()
        runner.join(timeout=10)
    assert not runner.is_alive()
    (report,) = reports
    assert (report.status.acked, report.status.rejected, report.status.depth) == (ROWS, 0, 0)
    assert report.status.last_error is not None  # the outage was noticed and retried
    with running_hub.engine.connect() as conn:
        rows = conn.execute(text("SELECT version, envelope FROM certificates")).all()
    numbers = [json.loads(parse_envelope(bytes(env)).payload)["number"] for _, env in rows]
    assert len(numbers) == ROWS
    assert set(numbers) == {f"GL{n:08d}" for n in range(ROWS)}
    assert {version for version, _ in rows} == {1}


def test_backoff_is_full_jitter_up_to_a_doubling_capped_ceiling() -> None:
    low = Backoff(rng=lambda: 0.0)
    middle = Backoff(rng=lambda: 0.5)
    high = Backoff(rng=lambda: 1.0)
    highs = [high.next_delay() for _ in range(10)]
    assert highs[:4] == [0.5, 1.0, 2.0, 4.0]
    assert max(highs) == 30.0
    # Full jitter: anywhere from zero to the ceiling, not the ceiling's upper half.
    assert [low.next_delay() for _ in range(10)] == [0.0] * 10
    assert [middle.next_delay() for _ in range(3)] == [0.25, 0.5, 1.0]
    high.reset()
    assert high.next_delay() == 0.5


@pytest.mark.parametrize(
    ("code", "reason", "state"),
    [
        (grpc.StatusCode.UNAVAILABLE, "COMMIT_FAILED", ItemState.PENDING),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED", ItemState.PENDING),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "ENVELOPE_TOO_LARGE", ItemState.REJECTED),
        (grpc.StatusCode.INVALID_ARGUMENT, "BAD_SIGNATURE", ItemState.REJECTED),
        (grpc.StatusCode.INTERNAL, "", ItemState.REJECTED),
    ],
)
def test_a_rejected_item_is_retried_only_when_waiting_can_help(
    code: grpc.StatusCode, reason: str, state: ItemState
) -> None:
    item = OutboxItem(
        id=7,
        kind=ItemKind.PUSH,
        source_key="k",
        location="t [k]",
        certificate_id="ID",
        version=1,
        envelope=b"{}",
        attachment=None,
        after_id=None,
    )
    result = ingest_pb2.PushResult(
        client_ref="7", outcome=ingest_pb2.REJECTED, code=code.value[0], reason=reason, message="m"
    )
    settlement = _push_settlement(item, result)
    assert settlement.state is state
    assert (settlement.code, settlement.reason) == (code.name, reason)


def test_a_principal_the_hub_does_not_know_ends_the_pass_refused(
    running_hub: RunningHub, world: DemoWorld, amr: DemoDepartment, tmp_path: Path
) -> None:
    """UNAUTHENTICATED will not pass by waiting: the pass ends with HubRefused at once, and
    the items stay pending for the run after the operator's fix."""
    files = sqlite_department(
        running_hub, world, amr, tmp_path, (registration(n) for n in range(5))
    )
    config = load_config(files.config)
    stranger = running_hub.tls_for("nobody-adapter")
    config = dataclasses.replace(
        config, hub=dataclasses.replace(config.hub, cert=stranger.cert, key=stranger.key)
    )
    adapter = Adapter(config)
    try:
        with pytest.raises(HubRefused, match="UNAUTHENTICATED"):
            adapter.run_once()
    finally:
        adapter.close()
    assert outbox_counts(files.outbox) == {"pending": 5}


_Run = tuple[AdapterFiles, Adapter, threading.Thread, list[PassReport]]


@contextlib.contextmanager
def _pass_through_relay(
    running_hub: RunningHub,
    world: DemoWorld,
    amr: DemoDepartment,
    tmp_path: Path,
    *,
    rows: int,
    acked_first: int,
) -> Iterator[tuple[TcpRelay, _Run]]:
    """``rows`` registrations pushed by one adapter pass, started on a thread, to the hub
    through a relay whose connections the test can pause; entered once ``acked_first`` are
    acknowledged, and the pass is stopped and closed on the way out."""
    url = f"sqlite:///{tmp_path / 'department.db'}"
    create_registrations(url, (registration(n) for n in range(rows))).dispose()
    with tcp_relay(running_hub.address) as relay:
        files = write_config(
            tmp_path / "adapter",
            world=world,
            department=amr,
            address=relay.address,
            tls=running_hub.tls_for(amr.principal),
            source=sql_source(url),
            max_in_flight=16,
        )
        adapter = Adapter(load_config(files.config))
        reports: list[PassReport] = []
        runner = threading.Thread(target=lambda: reports.append(adapter.run_once()))
        runner.start()
        try:
            deadline = time.monotonic() + 60
            while outbox_counts(files.outbox).get("acked", 0) < acked_first:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            yield relay, (files, adapter, runner, reports)
        finally:
            adapter.stop.set()
            runner.join(timeout=10)
            adapter.close()


@pytest.mark.slow
def test_a_stream_without_results_is_cancelled_and_pushed_again(
    running_hub: RunningHub,
    world: DemoWorld,
    amr: DemoDepartment,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A hub process that takes a stream's bytes and answers nothing (frozen): after
    RESULT_TIMEOUT_SECONDS without a result the call is cancelled and its items are pushed
    again once the hub answers, while the other stream goes on; none is lost or stored
    twice. (The retry uses the same connection: had it been dead, keepalive would have
    closed it within about 40 s and the stream would have reconnected, as after a cut.)"""
    monkeypatch.setattr(pusher, "RESULT_TIMEOUT_SECONDS", 1.0)
    rows = 600
    with _pass_through_relay(running_hub, world, amr, tmp_path, rows=rows, acked_first=50) as (
        relay,
        run,
    ):
        files, _adapter, runner, reports = run
        first = relay.snapshot()
        assert len(first) == 2
        first[0].pause()
        deadline = time.monotonic() + 60
        while "no result for 1s" not in (outbox_last_error(files.outbox) or ""):
            assert time.monotonic() < deadline, outbox_last_error(files.outbox)
            time.sleep(0.05)
        first[0].resume()
        runner.join(timeout=60)
        connections = relay.snapshot()
    assert not runner.is_alive()
    (report,) = reports
    assert (report.status.acked, report.status.rejected, report.status.depth) == (rows, 0, 0)
    assert len(connections) == 2
    with running_hub.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM certificates")).scalar_one() == rows


@pytest.mark.slow
def test_stop_ends_a_pass_whose_stream_waits_for_the_hub(
    running_hub: RunningHub, world: DemoWorld, amr: DemoDepartment, tmp_path: Path
) -> None:
    """``stop`` while every stream waits on a hub that does not answer: the pass returns
    within a second or so (the call is cancelled, not waited out), and only what the hub
    answered is marked acknowledged."""
    rows = 300
    with _pass_through_relay(running_hub, world, amr, tmp_path, rows=rows, acked_first=20) as (
        relay,
        run,
    ):
        _files, adapter, runner, reports = run
        held = relay.snapshot()
        for connection in held:
            connection.pause()
        try:
            time.sleep(0.5)
            adapter.stop.set()
            stopped = time.monotonic()
            runner.join(timeout=10)
            took = time.monotonic() - stopped
        finally:
            for connection in held:
                connection.resume()
    assert not runner.is_alive()
    assert took < 3, took
    (report,) = reports
    assert report.status.acked < rows
    assert report.status.depth == rows - report.status.acked
    with running_hub.engine.connect() as conn:
        stored = conn.execute(text("SELECT count(*) FROM certificates")).scalar_one()
    # Acknowledged only what the hub answered (it may have stored more, unanswered: those
    # are pushed again next time and answered DUPLICATE).
    assert stored >= report.status.acked
