from __future__ import annotations

import datetime

import pytest

from certhub.hub.domain.status import CertificateStatus, compute_status

FROM = datetime.date(2024, 1, 1)
UNTIL = datetime.date(2024, 12, 31)
BEFORE = datetime.date(2023, 12, 31)
DURING = datetime.date(2024, 6, 1)
AFTER = datetime.date(2025, 1, 1)

S = CertificateStatus


@pytest.mark.parametrize(
    ("today", "revoked", "superseded", "expected"),
    [
        (DURING, False, False, S.VALID),
        (FROM, False, False, S.VALID),  # first valid day
        (UNTIL, False, False, S.VALID),  # valid_until is the last valid day
        (BEFORE, False, False, S.NOT_YET_VALID),
        (AFTER, False, False, S.EXPIRED),
        # REVOKED outranks everything
        (DURING, True, False, S.REVOKED),
        (DURING, True, True, S.REVOKED),
        (BEFORE, True, True, S.REVOKED),
        (AFTER, True, False, S.REVOKED),
        # SUPERSEDED outranks the calendar
        (DURING, False, True, S.SUPERSEDED),
        (BEFORE, False, True, S.SUPERSEDED),
        (AFTER, False, True, S.SUPERSEDED),
    ],
)
def test_status_precedence(
    today: datetime.date, revoked: bool, superseded: bool, expected: CertificateStatus
) -> None:
    status = compute_status(
        valid_from=FROM, valid_until=UNTIL, today=today, revoked=revoked, superseded=superseded
    )
    assert status is expected


def test_not_yet_valid_outranks_expired_for_an_inverted_window() -> None:
    # The payload schema rejects valid_until < valid_from; the precedence still decides.
    status = compute_status(
        valid_from=UNTIL, valid_until=FROM, today=DURING, revoked=False, superseded=False
    )
    assert status is S.NOT_YET_VALID


@pytest.mark.parametrize(
    ("today", "expected"),
    [(BEFORE, S.NOT_YET_VALID), (FROM, S.VALID), (datetime.date(9999, 12, 31), S.VALID)],
)
def test_no_expiry(today: datetime.date, expected: CertificateStatus) -> None:
    status = compute_status(
        valid_from=FROM, valid_until=None, today=today, revoked=False, superseded=False
    )
    assert status is expected


def test_status_values_are_their_names() -> None:
    assert [str(s) for s in S] == [
        "VALID",
        "NOT_YET_VALID",
        "EXPIRED",
        "SUPERSEDED",
        "REVOKED",
        "UNUSABLE",
    ]
