"""The console and the transparency page in a real browser: Debian's chromium driven by
Playwright (no browser download), clicking through every page. The figures shown must be
the hub's figures for the same period; a tampered receipt must fail in the browser.
Screenshots of each page are kept under test-artifacts/console/ for people to look at."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from certhub.hub.web.console import AuditFilter, Console
from certhub.v1 import directory_pb2

from .conftest import ARTIFACTS, ServedConsole

CHROMIUM = Path(os.environ.get("CERTHUB_CHROMIUM", "/usr/bin/chromium"))
AUDITOR = "gulou-audit-office"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason=f"{CHROMIUM} missing: .ci/run installs Debian's chromium"
    ),
    # One database is enough for what a browser sees; the data paths run on both elsewhere.
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield launched
        launched.close()


def _context(
    browser: Browser, served: ServedConsole, principal: str | None, viewport: dict[str, int]
) -> BrowserContext:
    certificates = []
    if principal is not None:
        tls = served.running.tls_for(principal)
        certificates = [{"origin": served.url, "certPath": str(tls.cert), "keyPath": str(tls.key)}]
    # The hub's development CA is not in the browser's trust store; the TLS checks that
    # matter here (client certificates of that CA) are the server's.
    return browser.new_context(
        ignore_https_errors=True,
        viewport=viewport,
        client_certificates=certificates,  # type: ignore[arg-type]
    )


def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _watch(page: Page) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def _text(page: Page, selector: str) -> str:
    return page.locator(selector).first.inner_text().strip()


def test_every_console_page_shows_the_hubs_figures(
    browser: Browser, served_console: ServedConsole
) -> None:
    since, until = Console(served_console.work).default_period()
    with served_console.running.client(AUDITOR) as client:
        expected = client.call(
            client.directory.GetStats,
            directory_pb2.GetStatsRequest(
                since=since,
                until=until,
                by=[
                    directory_pb2.STATS_BY_MONTH,
                    directory_pb2.STATS_BY_DEPARTMENT,
                    directory_pb2.STATS_BY_SERVICE_ITEM,
                    directory_pb2.STATS_BY_WINDOW,
                ],
            ),
        )
    breakdowns = {b.by: b.groups for b in expected.breakdowns}
    context = _context(browser, served_console, AUDITOR, DESKTOP)
    page = context.new_page()
    errors = _watch(page)
    page.goto(served_console.url + "/")
    expect(page).to_have_url(served_console.url + "/dashboard")
    # Keyboard first: the first Tab reaches the skip link, which jumps to the content.
    page.keyboard.press("Tab")
    assert "Skip to content" in page.evaluate("document.activeElement.textContent")
    assert _text(page, '[data-kpi="cases_registered"]') == f"{expected.cases_registered:,}"
    assert _text(page, '[data-kpi="cases_with_e_certificate"]') == (
        f"{expected.cases_with_e_certificate:,}"
    )
    assert _text(page, '[data-kpi="case_usage_rate"]') == f"{expected.case_usage_rate:.2%}"
    assert _text(page, '[data-kpi="exemption_rate"]') == f"{expected.exemption_rate:.2%}"
    assert _text(page, '[data-kpi="certificates_total"]') == f"{expected.certificates_total:,}"
    assert _text(page, '[data-kpi="until"]') == expected.until
    months = breakdowns[directory_pb2.STATS_BY_MONTH]
    for group in months:
        row = page.locator(f'table[data-breakdown="MONTH"] tr[data-key="{group.key}"]')
        cells = {
            field: row.locator(f'[data-field="{field}"]').inner_text()
            for field in ("registered", "with_e_certificate", "usage_rate", "exemption_rate")
        }
        assert cells == {
            "registered": f"{group.cases_registered:,}",
            "with_e_certificate": f"{group.cases_with_e_certificate:,}",
            "usage_rate": f"{group.usage_rate:.2%}",
            "exemption_rate": "—" if group.exemption_rate < 0 else f"{group.exemption_rate:.2%}",
        }
    for by, name in (
        (directory_pb2.STATS_BY_DEPARTMENT, "DEPARTMENT"),
        (directory_pb2.STATS_BY_SERVICE_ITEM, "SERVICE_ITEM"),
        (directory_pb2.STATS_BY_WINDOW, "WINDOW"),
    ):
        for group in breakdowns[by]:
            row = page.locator(f'table[data-breakdown="{name}"] tr[data-key="{group.key}"]')
            assert row.locator('[data-field="registered"]').inner_text() == (
                f"{group.cases_registered:,}"
            )
        assert page.locator(f'table[data-breakdown="{name}"] tbody tr').count() == len(
            breakdowns[by]
        )
    for item in expected.non_exempt_items:
        shown = page.locator(f'[data-list="non_exempt"] > li[data-key="{item.code}"]')
        assert shown.locator('[data-field="cases_registered"]').first.inner_text() == (
            f"{item.cases_registered:,}"
        )
    # The charts were drawn by the shipped Chart.js, from the same numbers.
    drawn = page.evaluate("Chart.getChart('chart-months').data.datasets[0].data")
    assert drawn == [round(g.usage_rate * 100, 2) if g.cases_registered else None for g in months]
    _shot(page, "dashboard-1280")

    page.get_by_role("link", name="审计日志 Audit log").click()
    expect(page.locator("table.entries")).to_be_visible()
    page.get_by_label("办件号 Case").fill("GL-LIVE-1")
    page.get_by_role("button", name="查询 Search", exact=True).click()
    # Registered, fetched, closed, and this very query (it names the case it looked at).
    rows = page.locator("table.entries tbody tr")
    expect(rows).to_have_count(4)
    actions = [rows.nth(i).locator("td").nth(3).inner_text() for i in range(4)]
    assert sorted(a.split()[0] for a in actions) == [
        "close_case",
        "console",
        "fetch",
        "register_case",
    ]
    _shot(page, "audit-by-case")
    # By holder: the ID goes in a POST form; the page shows only its commitment.
    holder_id = served_console.pushed.holder_id
    page.get_by_label("证件类型 ID type").select_option("USCC")
    page.get_by_label("证件号码 ID number").fill(holder_id)
    page.get_by_role("button", name="按持证主体查询 Search by holder").click()
    commitment = served_console.running.hub.commitment(f"USCC:{holder_id}")
    expect(page.locator("[data-holder]")).to_have_text(commitment)
    expect(page.locator("table.entries")).to_contain_text("GL-LIVE-1")
    assert holder_id not in page.content()
    assert holder_id not in page.url
    _shot(page, "audit-by-holder")
    page.get_by_label("办件号 Case").fill("GL-LIVE-1")
    page.get_by_role("button", name="查询 Search", exact=True).click()
    rows.filter(has_text="fetch").get_by_role("link").first.click()
    expect(page.locator('[data-proof-verified="true"]')).to_be_visible()
    receipt = json.loads(page.locator("[data-receipt]").inner_text())
    assert set(receipt) == {"log", "index", "leaf_hash", "checkpoint"}
    _shot(page, "audit-entry")

    page.get_by_role("link", name="目录 Registry").click()
    expect(page.locator('table[data-table="items"] tbody tr')).to_have_count(
        len(served_console.running.world.items)
    )
    _shot(page, "registry")
    page.get_by_role("link", name="公开透明 Transparency").click()
    expect(page.locator("[data-size]")).not_to_be_empty()
    _shot(page, "transparency-1280")
    assert errors == []
    context.close()

    phone = _context(browser, served_console, AUDITOR, PHONE)
    page = phone.new_page()
    page.goto(served_console.url + "/dashboard")
    # Nothing wider than the phone: wide tables scroll inside their own boxes.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    _shot(page, "dashboard-phone")
    phone.close()


def test_a_receipt_is_checked_by_the_browser_and_a_tampered_one_fails(
    browser: Browser, served_console: ServedConsole
) -> None:
    work = served_console.work
    auditor = work.hub.registry().principals[AUDITOR]
    found = served_console.run(
        Console(work).audit_query(auditor, AuditFilter(case_number="GL-LIVE-1"))
    )
    fetch_index = next(row.index for row in found.rows if row.action == "fetch")
    receipt = served_console.run(Console(work).entry(auditor, fetch_index)).receipt
    assert receipt is not None
    context = _context(browser, served_console, None, DESKTOP)  # the public: no certificate
    page = context.new_page()
    errors = _watch(page)
    page.goto(served_console.url + "/transparency")
    result = page.locator("#receipt-result")

    def check(text: str) -> str:
        page.locator("#receipt-text").fill(text)
        page.get_by_role("button", name="在浏览器中核验 Verify in this browser").click()
        expect(result).to_have_attribute("data-verdict", "pass" if text == good else "fail")
        return result.inner_text()

    good = receipt.to_json()
    assert f"entry {fetch_index} is in the checkpoint" in check(good)
    _shot(page, "receipt-valid")

    fields = json.loads(good)
    flipped = fields | {
        "leaf_hash": ("0" if fields["leaf_hash"][0] != "0" else "1") + fields["leaf_hash"][1:]
    }
    assert "inclusion proof leads to another root" in check(json.dumps(flipped))
    _shot(page, "receipt-tampered")

    origin, size, rest = fields["checkpoint"].split("\n", 2)
    resized = fields | {"checkpoint": f"{origin}\n{int(size) + 1}\n{rest}"}
    assert "signature does not verify" in check(json.dumps(resized))
    other_index = fields | {"index": fields["index"] + 1}
    assert "Not valid" in check(json.dumps(other_index))
    assert errors == []
    context.close()
