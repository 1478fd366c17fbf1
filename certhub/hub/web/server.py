"""The HTTP edge of the console: TLS with optional client certificates, authentication to
registry principals, audited views, templates, static assets and the public page.

Access: the server asks every browser for a client certificate of the hub's CA
(``ssl.CERT_OPTIONAL``). The public transparency page needs none; every console page needs
one whose CN names a registry principal with role OPERATOR or AUDITOR (the audit browser:
AUDITOR). The certificate is the same kind `certhub init` issues for gRPC clients, so the
registry is the one list of who may do what. Unknown and refused callers are audited.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from certhub.hub.citizen import CitizenDesk, StatusLists
from certhub.hub.errors import HubError, InvalidArgument
from certhub.hub.pki import PkiPaths
from certhub.hub.registry import Principal
from certhub.hub.services import credentials
from certhub.hub.web.console import AuditFilter, Console, fingerprint
from certhub.hub.web.kpis import KpiCollector, kpi_registry

log = logging.getLogger("certhub.console")

STATIC = Path(__file__).resolve().parent / "static"
# The pinned charting library shipped in the package (npm chart.js 4.6.1, its licence
# beside it); the page never loads anything from another origin.
CHART_JS = "vendor/chart-4.6.1.umd.min.js"
CSRF_COOKIE = "certhub_csrf"
# Form bodies are a holder ID and a token; anything larger is not from the console's form.
MAX_REQUEST_BYTES = 4096
# HTTP status of each domain error class (the console's one mapping, like hub/grpc/errors).
HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "FAILED_PRECONDITION": 409,
    "RESOURCE_EXHAUSTED": 429,
    "UNAVAILABLE": 503,
}
# Strict by default: scripts, styles and data only from this origin, no framing.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class ConsoleTLS:
    cert: Path
    key: Path
    client_ca: Path

    @classmethod
    def from_pki(cls, pki: PkiPaths) -> ConsoleTLS:
        return cls(cert=pki.server_cert, key=pki.server_key, client_ca=pki.ca_cert)

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert, self.key)
        context.load_verify_locations(cafile=self.client_ca)
        # Optional: the public page is for anyone; console pages check a principal below.
        context.verify_mode = ssl.CERT_OPTIONAL
        return context


def client_common_name(request: web.Request) -> str | None:
    """The CN of the verified client certificate of this connection, if any."""
    transport = request.transport
    if transport is None:
        return None
    peer: Any = transport.get_extra_info("peercert")
    if not peer:
        return None
    for rdn in peer.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("certhub.hub.web", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )
    env.filters["pct"] = lambda v: "—" if v is None else f"{v:.2%}"
    env.filters["num"] = lambda v: f"{v:,}"
    return env


class ConsoleApp:
    """The aiohttp application: one ``Console`` and a Jinja2 environment."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.env = _environment()
        hub = console.hub
        self.kpis = kpi_registry(KpiCollector(hub.sessions, hub.registry))
        self.status_lists = StatusLists(CitizenDesk(hub))

    def build(self) -> web.Application:
        app = web.Application(
            middlewares=[self._headers, self._errors], client_max_size=MAX_REQUEST_BYTES
        )
        app.router.add_get("/", self.index)
        app.router.add_get("/dashboard", self.dashboard)
        app.router.add_get("/registry", self.registry)
        app.router.add_get("/audit", self.audit)
        app.router.add_post("/audit", self.audit)
        app.router.add_get("/audit/entry/{index:[0-9]{1,19}}", self.entry)
        app.router.add_get("/transparency", self.transparency)
        app.router.add_get("/transparency/proof", self.proof)
        app.router.add_get("/metrics", self.metrics)
        # Public, like the transparency page: verifiers of exported credentials (issue 14).
        app.router.add_get("/status/{number:[0-9]{1,9}}", self.status_list)
        app.router.add_get("/status/{number:[0-9]{1,9}}/{purpose:suspension}", self.status_list)
        app.router.add_get("/credentials/jwks.json", self.credential_keys)
        app.router.add_static("/static/", STATIC, append_version=True)
        return app

    # --- middleware -----------------------------------------------------------------------

    @web.middleware
    async def _headers(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        for name, value in SECURITY_HEADERS.items():
            if name == "Cache-Control" and request.path.startswith("/static/"):
                continue
            response.headers.setdefault(name, value)
        return response

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except HubError as error:
            status = HTTP_STATUS.get(error.status_name, 500)
            fields = error.violations if isinstance(error, InvalidArgument) else ()
            return self._page(
                request,
                "error.html",
                status=status,
                error=error,
                fields=fields,
                principal=None,
            )

    # --- helpers --------------------------------------------------------------------------

    async def _caller(self, request: web.Request) -> Principal:
        """The registry principal of the client certificate; unknown ones are refused and
        audited (UNAUTHENTICATED) by the hub."""
        name = client_common_name(request)
        hub = self.console.hub
        method = f"console:{request.path}"
        principal = await hub.authenticate(name, method=method)
        # The principal's registry rate limit covers its console queries too.
        await hub.admit(principal, method=method)
        return principal

    def _page(
        self, request: web.Request, template: str, *, status: int = 200, **values: Any
    ) -> web.Response:
        values.setdefault("principal", None)
        body = self.env.get_template(template).render(
            path=request.path, static=self._static, chart_js=CHART_JS, **values
        )
        return web.Response(text=body, status=status, content_type="text/html")

    @staticmethod
    def _static(name: str) -> str:
        return f"/static/{name}"

    # --- pages ----------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.StreamResponse:
        if client_common_name(request) is None:
            raise web.HTTPFound("/transparency")
        raise web.HTTPFound("/dashboard")

    async def dashboard(self, request: web.Request) -> web.Response:
        caller = await self._caller(request)
        default_since, default_until = self.console.default_period()
        since = request.query.get("since", default_since)
        until = request.query.get("until", default_until)
        board = await self.console.dashboard(caller, since, until)
        return self._page(
            request,
            "dashboard.html",
            principal=caller,
            board=board,
            p=board.period,
            since=since,
            until=until,
            chart_data=board.chart_data,
        )

    async def registry(self, request: web.Request) -> web.Response:
        caller = await self._caller(request)
        registry, index = await self.console.registry(caller)
        return self._page(
            request, "registry.html", principal=caller, registry=registry, audit_index=index
        )

    async def audit(self, request: web.Request) -> web.Response:
        caller = await self._caller(request)
        q = request.query
        form = AuditFilter(
            principal=q.get("principal", ""),
            case_number=q.get("case", ""),
            action=q.get("action", ""),
            since=q.get("since", ""),
            until=q.get("until", ""),
            page_token=q.get("page", ""),
        )
        id_type = holder_id = ""
        token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        if request.method == "POST":
            # The holder's ID comes in a POST body, so it stays out of URLs, histories and
            # access logs; a double-submit token ties the form to this console.
            body = await request.post()
            if not secrets.compare_digest(str(body.get("csrf", "")), token):
                raise web.HTTPForbidden(text="the form's token does not match; reload the page")
            id_type = str(body.get("id_type", ""))
            holder_id = str(body.get("holder_id", ""))
        results = await self.console.audit_query(caller, form, id_type=id_type, holder_id=holder_id)
        response = self._page(
            request,
            "audit.html",
            principal=caller,
            form=form,
            results=results,
            id_type=id_type,
            csrf=token,
        )
        response.set_cookie(
            CSRF_COOKIE, token, secure=True, httponly=True, samesite="Strict", path="/audit"
        )
        return response

    async def entry(self, request: web.Request) -> web.Response:
        caller = await self._caller(request)
        index = int(request.match_info["index"])
        detail = await self.console.entry(caller, index)
        return self._page(request, "entry.html", principal=caller, entry=detail)

    async def transparency(self, request: web.Request) -> web.Response:
        page = await asyncio.to_thread(self.console.transparency)
        return self._page(
            request,
            "transparency.html",
            t=page,
            fingerprint=fingerprint(page.vkey),
            chart_data={
                "times": [t for t, _ in page.history],
                "sizes": [s for _, s in page.history],
            },
        )

    async def proof(self, request: web.Request) -> web.Response:
        try:
            index = int(request.query.get("index", ""))
            size = int(request.query.get("size", ""))
        except ValueError:
            raise InvalidArgument(
                "index and size must be whole numbers", reason="BAD_PROOF_REQUEST"
            ) from None
        if index < 0 or size < 1:
            raise InvalidArgument("index must be >= 0 and size >= 1", reason="BAD_PROOF_REQUEST")
        found = await asyncio.to_thread(self.console.public_proof, index, size)
        return web.json_response(found)

    async def status_list(self, request: web.Request) -> web.Response:
        """A Bitstring Status List credential (vc+jwt), computed now: a revocation shows at
        once. No login: whoever holds an exported credential must be able to check it."""
        purpose = credentials.Purpose(request.match_info.get("purpose", "revocation"))
        number = int(request.match_info["number"])
        body = await asyncio.to_thread(self.status_lists.get, number, purpose)
        return web.Response(text=body, headers={"Content-Type": credentials.CREDENTIAL_MEDIA_TYPE})

    async def credential_keys(self, request: web.Request) -> web.Response:
        """The hub's attestation key as a JWK Set, for verifiers of its credentials."""
        hub = self.console.hub
        desk = CitizenDesk(hub)
        keys = credentials.jwks(hub.attestation_key.public_key, issuer=desk.issuer())
        return web.json_response(keys, content_type="application/jwk-set+json")

    async def metrics(self, request: web.Request) -> web.Response:
        """The reform's KPIs for Prometheus: aggregates by registry code, no personal data,
        so no login (like the hub's own metrics endpoint)."""
        body = await asyncio.to_thread(generate_latest, self.kpis)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@dataclass
class RunningConsole:
    runner: web.AppRunner
    port: int
    host: str

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}/"

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_console(
    console: Console, *, host: str, port: int, tls: ConsoleTLS
) -> RunningConsole:
    """Serve the console on ``host:port`` (0 = any free port) until ``stop``."""
    runner = web.AppRunner(ConsoleApp(console).build(), access_log=None)
    await runner.setup()
    # Bound here, so port 0 yields the real port to print and to test against.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        await runner.cleanup()
        raise
    site = web.SockSite(runner, sock, ssl_context=tls.context())
    await site.start()
    return RunningConsole(runner=runner, port=int(sock.getsockname()[1]), host=host)
