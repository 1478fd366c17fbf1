"""An adapter's /metrics endpoint reports its outbox as it is at each scrape."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from certhub.adapters.metrics import serve_outbox_metrics
from certhub.adapters.outbox import ItemKind, ItemState, NewItem, Outbox, Settlement, WriteBatch


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text: str = response.read().decode()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("certhub_adapter")
    }


def _item(n: int, kind: ItemKind = ItemKind.PUSH) -> NewItem:
    return NewItem(
        kind=kind,
        source_key=f"row-{n}",
        location=f"licences.csv:{n + 1}",
        certificate_id=f"cert-{n}",
        version=1,
        envelope=b"{}",
    )


def test_outbox_depth_rejections_and_last_success_follow_the_outbox(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    with Outbox(path) as outbox:
        outbox.write(WriteBatch(items=[_item(n) for n in range(3)] + [_item(9, ItemKind.REVOKE)]))
    endpoint = serve_outbox_metrics(path, port=0)
    try:
        before = _scrape(endpoint.port)
        with Outbox(path) as outbox:
            first, second, *_ = outbox.pending_pushes(after_id=0, limit=10)
            outbox.settle(
                [
                    Settlement(id=first.id, state=ItemState.ACKED, outcome="ACCEPTED"),
                    Settlement(
                        id=second.id,
                        state=ItemState.REJECTED,
                        code="INVALID_ARGUMENT",
                        reason="INVALID_HOLDER_ID",
                        message="holder.id: bad check character",
                    ),
                ]
            )
        after = _scrape(endpoint.port)
    finally:
        endpoint.stop()
    assert before['certhub_adapter_outbox_depth{kind="push"}'] == 3
    assert before['certhub_adapter_outbox_depth{kind="revoke"}'] == 1
    assert before["certhub_adapter_outbox_rejected"] == 0
    assert "certhub_adapter_last_success_timestamp_seconds" not in before
    assert after['certhub_adapter_outbox_depth{kind="push"}'] == 1
    assert after["certhub_adapter_outbox_rejected"] == 1
    assert after["certhub_adapter_outbox_acked"] == 1
    assert after["certhub_adapter_last_success_timestamp_seconds"] > 1.7e9
