"""Who may see what: the console's authentication (client certificates of the hub's CA,
bound to registry principals), roles, and the audit entry of every view and refusal. Over
real HTTPS on loopback, with aiohttp's client."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Coroutine
from typing import Any, TypeVar

import aiohttp
from sqlalchemy import select
from sqlalchemy.orm import Session

from certhub.hub.audit.entry import Action
from certhub.hub.store.models import AuditEntry

from .conftest import ServedConsole

T = TypeVar("T")
AUDITOR = "gulou-audit-office"
OPERATOR = "gulou-operator"


def _run(served: ServedConsole, coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run_coroutine_threadsafe(coroutine, served.loop).result(timeout=60)


def _context(served: ServedConsole, principal: str | None) -> ssl.SSLContext:
    pki = served.running.config.pki
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    if principal is not None:
        cert, key = served.running.tls_for(principal).cert, served.running.tls_for(principal).key
        context.load_cert_chain(cert, key)
    return context


def get(
    served: ServedConsole,
    path: str,
    principal: str | None,
    *,
    data: dict[str, str] | None = None,
    cookies: dict[str, str] | None = None,
) -> tuple[int, str, dict[str, str]]:
    async def go() -> tuple[int, str, dict[str, str]]:
        connector = aiohttp.TCPConnector(ssl=_context(served, principal))
        async with aiohttp.ClientSession(connector=connector, cookies=cookies) as session:
            method = session.post if data is not None else session.get
            async with method(served.url + path, data=data, allow_redirects=False) as response:
                got = {c.key: c.value for c in session.cookie_jar}
                return response.status, await response.text(), got | dict(response.headers)

    return _run(served, go())


def _last_entry(served: ServedConsole) -> AuditEntry:
    with Session(served.running.engine) as session:
        row = session.scalars(select(AuditEntry).order_by(AuditEntry.idx.desc()).limit(1)).one()
        session.expunge(row)
        return row


def test_no_certificate_no_console_but_the_public_page(served_console: ServedConsole) -> None:
    status, body, _ = get(served_console, "/dashboard", None)
    assert status == 401
    assert "UNAUTHENTICATED" in body
    entry = _last_entry(served_console)
    assert (entry.action, entry.outcome) == (str(Action.REFUSED), "UNAUTHENTICATED")
    status, body, headers = get(served_console, "/transparency", None)
    assert status == 200
    assert "核验我的回执" in body
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    # The root sends a browser without a certificate to the public page.
    status, _, headers = get(served_console, "/", None)
    assert (status, headers["Location"]) == (302, "/transparency")


def test_roles_decide_and_every_view_is_audited(served_console: ServedConsole) -> None:
    department = next(iter(served_console.running.world.departments.values())).principal
    status, body, _ = get(served_console, "/dashboard", department)
    assert status == 403
    assert "needs AUDITOR or OPERATOR" in body
    refused = _last_entry(served_console)
    assert (refused.action, refused.outcome, refused.principal) == (
        str(Action.CONSOLE),
        "PERMISSION_DENIED",
        department,
    )
    status, body, _ = get(served_console, "/dashboard?since=2026-01-01", OPERATOR)
    assert status == 200
    viewed = _last_entry(served_console)
    assert (viewed.action, viewed.outcome, viewed.principal) == (
        str(Action.CONSOLE),
        "ok",
        OPERATOR,
    )
    assert f"#{viewed.idx}" in body
    # The audit browser is for auditors only.
    status, _, _ = get(served_console, "/audit", OPERATOR)
    assert status == 403
    status, _, _ = get(served_console, "/audit", AUDITOR)
    assert status == 200


def test_holder_search_posts_the_id_and_shows_only_the_commitment(
    served_console: ServedConsole,
) -> None:
    pushed = served_console.pushed
    status, _, cookies = get(served_console, "/audit", AUDITOR)
    assert status == 200
    token = cookies["certhub_csrf"]
    form = {"csrf": token, "id_type": "USCC", "holder_id": pushed.holder_id}
    # Without the cookie that pairs with the form's token, nothing is queried.
    status, _, _ = get(served_console, "/audit", AUDITOR, data=form)
    assert status == 403
    status, body, _ = get(
        served_console, "/audit", AUDITOR, data=form, cookies={"certhub_csrf": token}
    )
    assert status == 200
    commitment = served_console.running.hub.commitment(f"USCC:{pushed.holder_id}")
    assert commitment in body
    assert pushed.holder_id not in body
    assert "GL-LIVE-1" in body  # the live case's fetch of this holder
    query = _last_entry(served_console)
    assert (query.action, query.holder_commitment) == (str(Action.CONSOLE), commitment)
    # A bad ID is refused, named, and audited as this auditor's console query.
    form["holder_id"] = "not-an-id"
    status, body, _ = get(
        served_console, "/audit", AUDITOR, data=form, cookies={"certhub_csrf": token}
    )
    assert status == 400
    assert "holder" in body
    assert _last_entry(served_console).outcome == "INVALID_ARGUMENT"


def test_query_by_case_and_the_entry_with_its_proof(served_console: ServedConsole) -> None:
    status, body, _ = get(served_console, "/audit?case=GL-LIVE-1", AUDITOR)
    assert status == 200
    with Session(served_console.running.engine) as session:
        indices = list(
            session.scalars(
                select(AuditEntry.idx)
                .where(AuditEntry.case_number == "GL-LIVE-1", AuditEntry.action != "console")
                .order_by(AuditEntry.idx)
            )
        )
    assert len(indices) == 3  # registered, fetched, closed
    for index in indices:
        assert f'data-index="{index}"' in body
    status, body, _ = get(served_console, f"/audit/entry/{indices[1]}", AUDITOR)
    assert status == 200
    assert 'data-proof-verified="true"' in body
    assert "leaf_hash" in body
    status, body, _ = get(served_console, "/audit/entry/99999999", AUDITOR)
    assert status == 404


def test_public_proofs_carry_hashes_only_and_refuse_bad_input(
    served_console: ServedConsole,
) -> None:
    status, body, _ = get(served_console, "/transparency/proof?index=1&size=2", None)
    assert status == 200
    assert set(json.loads(body)) == {"leaf_index", "tree_size", "hashes"}
    status, body, _ = get(served_console, "/transparency/proof?index=x&size=2", None)
    assert status == 400
    status, body, _ = get(served_console, "/transparency/proof?index=5&size=3", None)
    assert status == 400


def test_the_kpis_are_served_for_prometheus_without_login(served_console: ServedConsole) -> None:
    status, body, headers = get(served_console, "/metrics", None)
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    assert "certhub_reform_usage_rate " in body
    assert 'certhub_reform_cases_registered{department="' in body
    assert served_console.pushed.holder_id not in body
