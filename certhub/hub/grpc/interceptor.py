"""The edge of every call, in one grpc.aio interceptor: observation (request id, access log,
metrics), authentication (client certificate CN -> registry principal, rate limit) and the
mapping of errors to status codes.

A HubError raised anywhere below becomes its status code with rich details; anything else
is a bug, logged and answered INTERNAL. The wrapped handler of each method is built once
and kept (the server's handlers never change), so a call costs one dict lookup here.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeAlias, cast

import grpc
import grpc.aio
from cryptography import x509
from cryptography.x509.oid import NameOID

from certhub.core.rpc.channel import INSECURE_PRINCIPAL_HEADER
from certhub.hub.app import Hub
from certhub.hub.errors import HubError, InvalidArgument
from certhub.hub.grpc.errors import internal_status, to_status
from certhub.hub.observability.calls import Call, CallObserver
from certhub.hub.pki import PRINCIPAL_URI_PREFIX
from certhub.hub.registry import Principal

log = logging.getLogger("certhub.grpc")

CERTHUB_METHOD_PREFIX = "/certhub."
# A claimed name longer than any registry principal is not echoed whole into the log.
_LOGGED_NAME_CHARS = 64

_principal: contextvars.ContextVar[Principal] = contextvars.ContextVar("certhub_principal")

# Generic only in grpc's type stubs: at run time these aliases stay strings.
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


def current_principal() -> Principal:
    """The authenticated caller of the call being served."""
    return _principal.get()


# Client certificates whose identity verdict is kept, by their PEM: parsing one costs tens of
# microseconds, the lookup one. A province has hundreds of principals, each with a current
# and, during a rotation, a next certificate: 4,096 holds them all, in ~10 MB at most.
IDENTITY_CACHE_SIZE = 4096


@functools.lru_cache(maxsize=IDENTITY_CACHE_SIZE)
def certificate_identity(pem: bytes) -> tuple[str | None, str | None]:
    """(the principal a client certificate names, why that identity is ambiguous or None).

    A principal's certificate names exactly one principal: one subject CN, and any
    ``urn:certhub:principal:`` URI in its subject alternative names equal to it. gRPC reports
    only the first CN, so a certificate with two (made by a CA that does not check, as
    ``certhub.hub.pki`` does) would make its first one the principal.
    """
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        return None, "client certificate: not a readable X.509 certificate"
    names = [
        v.value if isinstance(v.value, str) else v.value.decode("utf-8", "replace")
        for v in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    ]
    if len(names) != 1:
        return (names[0] if names else None), (
            f"client certificate has {len(names)} subject CNs; a principal's certificate "
            "names exactly one, the principal name"
        )
    name = names[0]
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return name, None
    others = sorted(
        {
            uri.removeprefix(PRINCIPAL_URI_PREFIX)
            for uri in san.get_values_for_type(x509.UniformResourceIdentifier)
            if uri.startswith(PRINCIPAL_URI_PREFIX)
        }
        - {name}
    )
    if others:
        return name, (
            f"client certificate names principal {name[:_LOGGED_NAME_CHARS]!r} in its CN and "
            f"{len(others)} other principal(s) in its subject alternative names; it must "
            "name one"
        )
    return name, None


def _claimed_name(context: Context, *, insecure: bool) -> tuple[str | None, str | None]:
    """(the claimed principal name, why the client certificate's identity is ambiguous)."""
    if insecure:
        for key, value in context.invocation_metadata() or ():
            if key == INSECURE_PRINCIPAL_HEADER:
                return str(value), None
        return None, None
    auth = context.auth_context()
    pems: object = auth.get("x509_pem_cert") or []
    if isinstance(pems, list) and pems and isinstance(pems[0], bytes):
        return certificate_identity(pems[0])
    names: object = auth.get("x509_common_name") or []
    if isinstance(names, list) and names and isinstance(names[0], bytes):
        return names[0].decode(errors="replace"), None
    return None, None


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


class EdgeInterceptor(grpc.aio.ServerInterceptor):
    """Observes every method; authenticates and maps errors for certhub's own methods."""

    def __init__(self, hub: Hub, *, insecure: bool = False, observer: CallObserver) -> None:
        self._hub = hub
        self._insecure = insecure
        self._observer = observer
        self._wrapped: dict[str, Handler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        method: str = details.method
        wrapped = self._wrapped.get(method)
        if wrapped is not None:
            return wrapped
        handler = await continuation(details)
        if handler is None:
            # Unknown methods are not memoised: a client could grow the map without bound.
            return None
        wrapped = self._wrapped[method] = self._wrap(method, handler)
        return wrapped

    def _wrap(self, method: str, handler: Handler) -> Handler:
        ours = method.startswith(CERTHUB_METHOD_PREFIX)
        deserializer = _tolerant(handler.request_deserializer) if ours else None
        # The servicers on this server are coroutines, whatever grpc's stubs declare.
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, cast("Any", handler.unary_unary), ours=ours),
                request_deserializer=deserializer or handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream and ours:
            return grpc.stream_stream_rpc_method_handler(
                self._streaming(method, cast("Any", handler.stream_stream)),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        if ours:
            raise TypeError(f"{method}: unsupported handler kind")  # pragma: no cover
        # Health Watch and reflection streams: served as they are (not observed).
        return handler

    async def _authenticate(self, call: Call, context: Context) -> None:
        """Sets the caller, once it has a token of its rate limit (a refusal raises,
        audited)."""
        claimed, problem = _claimed_name(context, insecure=self._insecure)
        call.principal = (claimed or "")[:_LOGGED_NAME_CHARS]
        principal = await self._hub.authenticate(claimed, method=call.method, problem=problem)
        await self._hub.admit(principal, method=call.method)
        _principal.set(principal)

    async def _refuse(self, call: Call, context: Context, status: grpc.Status) -> None:
        """Answer ``status`` with the request id added to its trailing metadata; raises."""
        self._observer.finish(call, status.code, peer=context.peer())
        await context.abort_with_status(
            _Status(status.code, status.details, (*status.trailing_metadata, call.trailer))
        )

    def _unary(
        self, method: str, behaviour: Callable[[Any, Context], Awaitable[Any]], *, ours: bool
    ) -> Callable[[Any, Context], Awaitable[Any]]:
        observer = self._observer

        async def wrapped(request: Any, context: Context) -> Any:
            call = observer.start(method, context.invocation_metadata())
            try:
                if ours:
                    await self._authenticate(call, context)
                    request = _decoded(method, request)
                response = await behaviour(request, context)
            except HubError as error:
                await self._refuse(call, context, to_status(error))
            except asyncio.CancelledError:
                observer.finish(call, grpc.StatusCode.CANCELLED, peer=context.peer())
                raise
            except Exception:
                log.exception("bug serving %s", method)
                await self._refuse(call, context, internal_status())
            observer.count_push(response)
            context.set_trailing_metadata((call.trailer,))
            observer.finish(call, grpc.StatusCode.OK, peer=context.peer())
            return response

        return wrapped

    def _streaming(
        self, method: str, behaviour: Callable[[Any, Context], AsyncIterator[Any]]
    ) -> Callable[[Any, Context], AsyncIterator[Any]]:
        observer = self._observer

        async def wrapped(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
            call = observer.start(method, context.invocation_metadata())
            try:
                await self._authenticate(call, context)
                decoded = (_decoded(method, r) async for r in requests)
                async for response in behaviour(decoded, context):
                    observer.count_push(response)
                    yield response
            except HubError as error:
                await self._refuse(call, context, to_status(error))
            except asyncio.CancelledError:
                observer.finish(call, grpc.StatusCode.CANCELLED, peer=context.peer())
                raise
            except Exception:
                log.exception("bug serving %s", method)
                await self._refuse(call, context, internal_status())
            context.set_trailing_metadata((call.trailer,))
            observer.finish(call, grpc.StatusCode.OK, peer=context.peer())

        return wrapped


@dataclass(frozen=True, slots=True)
class _Status(grpc.Status):
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...]
