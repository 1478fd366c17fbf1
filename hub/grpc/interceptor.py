"""Authentication and error mapping for every certhub method, in one interceptor.

Each call is authenticated (client certificate CN -> registry principal) before its servicer
runs; a HubError raised anywhere below becomes its status code with rich details; anything
else is a bug, logged and answered INTERNAL.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from hub.app import Hub
from hub.errors import HubError, InvalidArgument
from hub.grpc.errors import internal_status, to_status
from hub.registry import Principal

log = logging.getLogger("certhub.grpc")

# Development only (--insecure on loopback): the principal a client claims, unverified.
INSECURE_PRINCIPAL_HEADER = "x-certhub-principal"
CERTHUB_METHOD_PREFIX = "/certhub."

_principal: contextvars.ContextVar[Principal] = contextvars.ContextVar("certhub_principal")


def current_principal() -> Principal:
    """The authenticated caller of the call being served."""
    return _principal.get()


def _claimed_name(context: grpc.ServicerContext, *, insecure: bool) -> str | None:
    if insecure:
        for key, value in context.invocation_metadata():
            if key == INSECURE_PRINCIPAL_HEADER:
                return str(value)
        return None
    names: object = context.auth_context().get("x509_common_name") or []
    return names[0].decode() if isinstance(names, list) and names else None


@dataclass(frozen=True, slots=True)
class _Undecodable:
    """Request bytes that are not a valid message (bad wire format, invalid UTF-8 in a string
    field). gRPC answers a failing deserializer with INTERNAL; this lets the call answer
    INVALID_ARGUMENT instead, after authentication like any other bad input."""

    error: str


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as e:  # any parse failure is the client's bad input
            return _Undecodable(str(e) or type(e).__name__)

    return parse


def _decoded(method: str, request: Any) -> Any:
    if isinstance(request, _Undecodable):
        raise InvalidArgument(
            f"request to {method} is not a valid protobuf message: {request.error}",
            reason="MALFORMED_REQUEST",
        )
    return request


class EdgeInterceptor(grpc.ServerInterceptor):
    def __init__(self, hub: Hub, *, insecure: bool = False) -> None:
        self._hub = hub
        self._insecure = insecure

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = continuation(details)
        method: str = details.method
        if handler is None or not method.startswith(CERTHUB_METHOD_PREFIX):
            return handler
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, handler.unary_unary),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(
                self._streaming(method, handler.stream_stream),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        raise TypeError(f"{method}: unsupported handler kind")  # pragma: no cover

    def _authenticate(self, method: str, context: grpc.ServicerContext) -> Principal:
        """The caller, once it has a token of its rate limit (a refusal raises, audited)."""
        principal = self._hub.authenticate(
            _claimed_name(context, insecure=self._insecure), method=method
        )
        self._hub.admit(principal, method=method)
        return principal

    def _unary(
        self, method: str, behaviour: Callable[[Any, grpc.ServicerContext], Any]
    ) -> Callable[..., Any]:
        def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                _principal.set(self._authenticate(method, context))
                return behaviour(_decoded(method, request), context)
            except HubError as error:
                context.abort_with_status(to_status(error))
            except Exception:
                log.exception("bug serving %s", method)
                context.abort_with_status(internal_status())

        return wrapped

    def _streaming(
        self, method: str, behaviour: Callable[[Any, grpc.ServicerContext], Iterator[Any]]
    ) -> Callable[..., Iterator[Any]]:
        def wrapped(requests: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            try:
                _principal.set(self._authenticate(method, context))
                yield from behaviour((_decoded(method, r) for r in requests), context)
            except HubError as error:
                context.abort_with_status(to_status(error))
            except Exception:
                log.exception("bug serving %s", method)
                context.abort_with_status(internal_status())

        return wrapped
