"""The no-raw-ID rule for free text in audit entries (hub.audit.redact, docs/trust.md)."""

from __future__ import annotations

import datetime as dt

import pytest

from certhub.hub.audit.entry import OK, Action, AuditRecord
from certhub.hub.audit.redact import check_case_number, id_shape, redact, redact_certificate_id
from certhub.hub.demo.world import citizen, enterprise
from certhub.hub.errors import InvalidArgument

RESIDENT = citizen(3).holder.id  # a valid 18-character resident ID
USCC = enterprise(3).holder.id  # a valid USCC
GBT_ID = "1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.001.U"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (RESIDENT, "[resident-id]"),
        (f"GL-{RESIDENT}", "GL-[resident-id]"),
        (f"case {RESIDENT[:17]}x done", "case [resident-id] done"),
        ("110105194902300", "[digits]"),  # an old 15-digit ID
        ("6222021234567890123", "[digits]"),  # a bank card
        ("tel 13912345678.", "tel [mobile]."),
        (USCC, "[uscc]"),
        (USCC.lower(), "[uscc]"),
        (f"{RESIDENT}{RESIDENT}", "[digits]"),
    ],
)
def test_id_shaped_runs_are_replaced(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert RESIDENT not in redact(text)


@pytest.mark.parametrize(
    "text",
    [
        "GL-00001234",
        "350102-000201001000-XK-001",  # a service item code
        "2026-12-04",
        "12345678901234",  # 14 digits
        "23912345678",  # 11 digits not starting 13-19
        "ABCDEFGHJKLMNPQRTU",  # 18 USCC letters with a wrong check character
        "gulou-service-centre",
        "",
    ],
)
def test_ordinary_text_is_kept(text: str) -> None:
    assert redact(text) == text
    assert id_shape(text) is None


def test_gbt_identifiers_are_kept_whole_others_follow_the_rule() -> None:
    assert redact_certificate_id(GBT_ID) == GBT_ID
    assert redact_certificate_id(f"1.2.156.3005.2.{RESIDENT}") == "1.2.156.3005.2.[resident-id]"
    assert redact_certificate_id(f"AMR-{RESIDENT}") == "AMR-[resident-id]"


def test_case_numbers_shaped_like_ids_are_refused_without_echoing_them() -> None:
    check_case_number("GL-2026-000123")
    with pytest.raises(InvalidArgument) as raised:
        check_case_number(f"GL-{RESIDENT}")
    assert raised.value.reason == "ID_SHAPED_CASE_NUMBER"
    assert "[resident-id]" in raised.value.message
    assert RESIDENT not in str(raised.value.message)
    assert RESIDENT not in repr(raised.value.details if hasattr(raised.value, "details") else "")


def _record(action: Action, outcome: str, **fields: object) -> AuditRecord:
    return AuditRecord(
        time=dt.datetime(2026, 12, 4, tzinfo=dt.UTC),
        principal=str(fields.pop("principal", "gulou-service-centre")),
        action=action,
        outcome=outcome,
        **fields,  # type: ignore[arg-type]
    )


def test_every_free_text_field_of_an_entry_is_redacted() -> None:
    record = _record(
        Action.REFUSED,
        "UNAUTHENTICATED",
        principal=f"CN={RESIDENT}",
        service_item_code=RESIDENT,
        case_number=f"case-{RESIDENT}",
        certificate_ids=(RESIDENT, GBT_ID),
        method=f"/certhub.v1.IntakeService/{RESIDENT}",
    )
    leaf = record.leaf().decode()
    assert RESIDENT not in leaf
    assert GBT_ID in leaf
    assert record.case_number == "case-[resident-id]"
    assert record.certificate_ids == ("[resident-id]", GBT_ID)


def test_ids_of_stored_certificates_are_kept_those_asked_for_are_not() -> None:
    issuer_unique = f"AMR-{'1' * 16}"  # a department's own id scheme may have long numbers
    served = _record(Action.GET, OK, certificate_ids=(issuer_unique,))
    assert served.certificate_ids == (issuer_unique,)
    refused = _record(Action.GET, "NOT_FOUND", certificate_ids=(issuer_unique,))
    assert refused.certificate_ids == ("AMR-[digits]",)
    query = _record(Action.AUDIT_QUERY, OK, certificate_ids=(issuer_unique,))
    assert query.certificate_ids == ("AMR-[digits]",)


def test_the_holder_commitment_is_never_touched() -> None:
    commitment = "1234567890123456789" + "a" * 45  # a hex digest can hold a long digit run
    record = _record(Action.FETCH, OK, holder_commitment=commitment)
    assert record.holder_commitment == commitment
