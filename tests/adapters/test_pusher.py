"""The pusher against a hub that goes away and comes back."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import grpc
import pytest
from sqlalchemy import text
from support.adapters import (
    outbox_counts,
    outbox_last_error,
    registration,
    restart_hub,
    sqlite_department,
)
from support.hubs import RunningHub

from certhub.adapters import Adapter, PassReport, load_config
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
