"""Per-call observability: a request id, one access-log line, request and latency metrics.

``CallObserver`` is called by the gRPC edge's one interceptor (``certhub.hub.grpc.interceptor``)
at the start and the end of every call, so it sees the final status of every call,
including refused ones. It never reads a request or a response except a push result's
outcome, so no payload or holder ID can reach a log.

The request id is the caller's ``x-request-id`` if it is a sane token, else a new random
one; it is returned in the trailing metadata of every answer, error or not, and added to
every log line written while the call is served (``certhub.hub.observability.logs``).
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from typing import Any

import grpc
from prometheus_client.metrics import Counter, Histogram

from certhub.hub.observability.logs import ACCESS_LOGGER, request_id_var
from certhub.hub.observability.metrics import HubMetrics, metrics
from certhub.v1 import ingest_pb2

__all__ = ["REQUEST_ID_HEADER", "Call", "CallObserver"]

access_log = logging.getLogger(ACCESS_LOGGER)
# One line per call is what `certhub serve` wants (``configure_logging`` turns this logger
# on); hubs embedded in the demo, benchmarks and tests stay quiet unless they ask.
if access_log.level == logging.NOTSET:
    access_log.setLevel(logging.WARNING)

REQUEST_ID_HEADER = "x-request-id"
# A caller's request id is echoed only if it is a short token: it ends up in log lines and
# metadata, so it must not carry arbitrary text. 128 chars fits UUIDs, W3C trace ids and
# the ids load balancers add.
_INCOMING_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Random request ids: 16 hex chars (64 bits) make a collision within a day's calls unlikely.
_REQUEST_ID_BYTES = 8
# The unary push method, and the outcome its refusals count as (ingest.proto's PushOutcome).
_UNARY_PUSH = "PushCertificate"
_REJECTED = ingest_pb2.PushOutcome.Name(ingest_pb2.REJECTED)
# Health checks arrive every few seconds from every load balancer: counted, logged at debug.
_QUIET_PREFIXES = ("/grpc.health.", "/grpc.reflection.")


def _request_id(metadata: Any) -> str:
    for key, value in metadata or ():
        if key == REQUEST_ID_HEADER and isinstance(value, str):
            if _INCOMING_REQUEST_ID.fullmatch(value):
                return value
            break
    return secrets.token_hex(_REQUEST_ID_BYTES)


class Call:
    """One call's observation, gathered at its start."""

    __slots__ = ("method", "principal", "request_id", "started")

    def __init__(self, method: str, request_id: str) -> None:
        self.method = method
        self.request_id = request_id
        self.started = time.perf_counter()
        # Filled in by the edge once it read the client certificate (or the insecure
        # header): the access log names who called, registered or not.
        self.principal = ""

    @property
    def trailer(self) -> tuple[str, str]:
        return (REQUEST_ID_HEADER, self.request_id)


class _MethodSeries:
    """The metric children of one method, looked up once: ``labels()`` takes a lock and
    hashes its label tuple on every call, a few microseconds per call on the hot path."""

    __slots__ = ("latency", "name", "requests", "requests_counter", "service")

    def __init__(self, m: HubMetrics, method: str) -> None:
        self.service, _, self.name = method.lstrip("/").partition("/")
        self.latency = m.latency.labels(self.service, self.name)
        self.requests_counter: Counter = m.requests
        self.requests: dict[grpc.StatusCode, Counter] = {}

    def count(self, code: grpc.StatusCode) -> None:
        child = self.requests.get(code)
        if child is None:
            child = self.requests[code] = self.requests_counter.labels(
                self.service, self.name, code.name
            )
        child.inc()


class CallObserver:
    """Starts and finishes the observation of calls; one per server."""

    def __init__(self, *, m: HubMetrics | None = None) -> None:
        self._m = m or metrics()
        self._series: dict[str, _MethodSeries] = {}
        self._pushes: dict[int, Counter] = {}
        self._rejected: Counter = self._m.pushes.labels(_REJECTED)

    def start(self, method: str, metadata: Any) -> Call:
        call = Call(method, _request_id(metadata))
        request_id_var.set(call.request_id)
        return call

    def count_push(self, response: object) -> None:
        if isinstance(response, ingest_pb2.PushResult):
            child = self._pushes.get(response.outcome)
            if child is None:
                name = ingest_pb2.PushOutcome.Name(response.outcome)
                child = self._pushes[response.outcome] = self._m.pushes.labels(name)
            child.inc()

    def finish(self, call: Call, code: grpc.StatusCode, *, peer: str) -> None:
        elapsed = time.perf_counter() - call.started
        series = self._series.get(call.method)
        if series is None:
            series = self._series[call.method] = _MethodSeries(self._m, call.method)
        series.count(code)
        if series.name == _UNARY_PUSH and code is not grpc.StatusCode.OK:
            # A refused single push answers with a status, not a REJECTED result: count it
            # with the streamed rejections so the outcome counter covers every push.
            self._rejected.inc()
        latency: Histogram = series.latency
        latency.observe(elapsed)
        quiet = call.method.startswith(_QUIET_PREFIXES)
        level = logging.DEBUG if quiet and code is grpc.StatusCode.OK else logging.INFO
        if access_log.isEnabledFor(level):
            access_log.log(
                level,
                "%s %s %.1f ms",
                call.method,
                code.name,
                elapsed * 1000,
                extra={
                    "method": call.method,
                    "principal": call.principal,
                    "status": code.name,
                    "latency_ms": round(elapsed * 1000, 3),
                    "request_id": call.request_id,
                    "peer": peer,
                },
            )
        request_id_var.set(None)
