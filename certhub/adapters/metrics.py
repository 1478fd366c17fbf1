"""Prometheus metrics of an adapter: how much of its outbox still waits for the hub.

``serve_outbox_metrics(path, port=...)`` serves ``/metrics`` on its own registry. Each scrape
opens the outbox file read-only-in-practice with a fresh connection (the outbox wants one
connection per thread) and reports its depth, rejected items and last success. Lives in
``adapters`` because adapters never import ``hub``.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from certhub.adapters.outbox import Outbox

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from prometheus_client.core import Metric

__all__ = ["OutboxMetrics", "serve_outbox_metrics"]


class _OutboxCollector(Collector):
    def __init__(self, path: Path) -> None:
        self._path = path

    def collect(self) -> Iterator[Metric]:
        with Outbox(self._path) as outbox:
            report = outbox.status()
        depth = GaugeMetricFamily(
            "certhub_adapter_outbox_depth",
            "Signed items in the outbox the hub has not acknowledged yet",
            labels=["kind"],
        )
        depth.add_metric(["push"], report.pending_pushes)
        depth.add_metric(["revoke"], report.pending_revocations)
        yield depth
        yield GaugeMetricFamily(
            "certhub_adapter_outbox_rejected",
            "Items the hub rejected; they wait for an operator (certhub adapter status)",
            value=report.rejected,
        )
        yield GaugeMetricFamily(
            "certhub_adapter_outbox_acked", "Items the hub acknowledged", value=report.acked
        )
        yield GaugeMetricFamily(
            "certhub_adapter_source_problems",
            "Source rows reported as unusable (bad ID, missing date, ...)",
            value=report.problems,
        )
        if report.last_success:
            yield GaugeMetricFamily(
                "certhub_adapter_last_success_timestamp_seconds",
                "When the hub last acknowledged a push (Unix time)",
                value=_timestamp(report.last_success),
            )


def _timestamp(iso: str) -> float:
    moment = dt.datetime.fromisoformat(iso)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


@dataclass
class OutboxMetrics:
    """The running endpoint; ``port`` is the one bound (useful with port 0)."""

    server: WSGIServer
    thread: threading.Thread
    port: int

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def serve_outbox_metrics(path: Path, *, port: int, host: str = "127.0.0.1") -> OutboxMetrics:
    """Serve the outbox at ``path`` as metrics on ``host:port`` until ``stop()``."""
    registry = CollectorRegistry()
    registry.register(_OutboxCollector(path))
    server, thread = start_http_server(port, addr=host, registry=registry)
    return OutboxMetrics(server=server, thread=thread, port=server.server_port)
