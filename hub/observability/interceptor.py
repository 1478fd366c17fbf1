"""Per-call observability: a request id, one access-log line, request and latency metrics.

Installed as the OUTERMOST server interceptor, so it sees the final status of every call,
including the ones the authentication/error interceptor refused. It never reads a request
or a response except a push result's outcome, so no payload or holder ID can reach a log.

The request id is the caller's ``x-request-id`` if it is a sane token, else a new random
one; it is returned in the trailing metadata of every answer, error or not, and added to
every log line written while the call is served (``hub.observability.logs``).
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from certhub.v1 import ingest_pb2
from hub.observability.logs import ACCESS_LOGGER, request_id_var
from hub.observability.metrics import HubMetrics, metrics

__all__ = ["REQUEST_ID_HEADER", "ObservabilityInterceptor"]

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
# The principal's name as a client certificate carries it (mTLS) or as the development mode's
# header claims it; the authentication interceptor decides whether it is registered.
_INSECURE_PRINCIPAL_HEADER = "x-certhub-principal"


def _split(method: str) -> tuple[str, str]:
    service, _, name = method.lstrip("/").partition("/")
    return service, name


def _request_id(context: grpc.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_HEADER and isinstance(value, str):
            if _INCOMING_REQUEST_ID.fullmatch(value):
                return value
            break
    return secrets.token_hex(_REQUEST_ID_BYTES)


def _principal(context: grpc.ServicerContext, *, insecure: bool) -> str:
    if insecure:
        for key, value in context.invocation_metadata() or ():
            if key == _INSECURE_PRINCIPAL_HEADER and isinstance(value, str):
                return value[:64]
        return ""
    names: object = context.auth_context().get("x509_common_name") or []
    if isinstance(names, list) and names and isinstance(names[0], bytes):
        return names[0].decode(errors="replace")
    return ""


class _Call:
    """What one call's observation needs, gathered at its start."""

    __slots__ = ("context", "method", "request_id", "started")

    def __init__(self, method: str, context: grpc.ServicerContext) -> None:
        self.method = method
        self.context = context
        self.request_id = _request_id(context)
        request_id_var.set(self.request_id)
        self.started = time.perf_counter()


class ObservabilityInterceptor(grpc.ServerInterceptor):
    def __init__(self, *, insecure: bool = False, m: HubMetrics | None = None) -> None:
        self._insecure = insecure
        self._m = m or metrics()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        method: str = details.method
        kinds: list[tuple[str, Callable[..., Any], Callable[..., Any]]] = [
            ("unary_unary", self._unary, grpc.unary_unary_rpc_method_handler),
            ("stream_unary", self._unary, grpc.stream_unary_rpc_method_handler),
            ("unary_stream", self._streaming, grpc.unary_stream_rpc_method_handler),
            ("stream_stream", self._streaming, grpc.stream_stream_rpc_method_handler),
        ]
        for attribute, wrap, make in kinds:
            behaviour = getattr(handler, attribute)
            if behaviour is not None:
                return make(
                    wrap(method, behaviour),
                    request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer,
                )
        return handler  # pragma: no cover - grpc has only these four kinds

    def _unary(self, method: str, behaviour: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
            call = _Call(method, context)
            try:
                response = behaviour(request, context)
            except BaseException:
                self._finish(call, failed=True)
                raise
            self._count_push(response)
            self._finish(call, failed=False)
            return response

        return wrapped

    def _streaming(
        self, method: str, behaviour: Callable[..., Iterator[Any]]
    ) -> Callable[..., Iterator[Any]]:
        def wrapped(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            call = _Call(method, context)
            try:
                for response in behaviour(request, context):
                    self._count_push(response)
                    yield response
            except BaseException:
                self._finish(call, failed=True)
                raise
            self._finish(call, failed=False)

        return wrapped

    def _count_push(self, response: object) -> None:
        if isinstance(response, ingest_pb2.PushResult):
            self._m.pushes.labels(ingest_pb2.PushOutcome.Name(response.outcome)).inc()

    def _finish(self, call: _Call, *, failed: bool) -> None:
        context = call.context
        elapsed = time.perf_counter() - call.started
        # ServicerContext.code() exists since grpcio 1.38; the stubs lag behind.
        code: grpc.StatusCode | None = context.code()  # type: ignore[attr-defined]
        if code is None:
            # No status set: success, or an exception grpc will answer with UNKNOWN.
            code = grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK
        # After an abort the trailing metadata holds the rich status details: keep them.
        trailing = tuple(context.trailing_metadata() or ())
        context.set_trailing_metadata((*trailing, (REQUEST_ID_HEADER, call.request_id)))
        service, name = _split(call.method)
        self._m.requests.labels(service, name, code.name).inc()
        if name == _UNARY_PUSH and code is not grpc.StatusCode.OK:
            # A refused single push answers with a status, not a REJECTED result: count it
            # with the streamed rejections so the outcome counter covers every push.
            self._m.pushes.labels(_REJECTED).inc()
        self._m.latency.labels(service, name).observe(elapsed)
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
                    "principal": _principal(context, insecure=self._insecure),
                    "status": code.name,
                    "latency_ms": round(elapsed * 1000, 3),
                    "request_id": call.request_id,
                    "peer": context.peer(),
                },
            )
        request_id_var.set(None)
