"""A certificate's status, computed at read time from its dates and the log of changes."""

from __future__ import annotations

import datetime
from enum import StrEnum

__all__ = ["CST", "CertificateStatus", "compute_status"]

# China Standard Time (UTC+8, no daylight saving): certificates' dates, "today" of a status,
# an ID's birth date and the reform's months are all Chinese civil dates.
CST = datetime.timezone(datetime.timedelta(hours=8), "CST")


class CertificateStatus(StrEnum):
    VALID = "VALID"
    NOT_YET_VALID = "NOT_YET_VALID"
    EXPIRED = "EXPIRED"
    SUPERSEDED = "SUPERSEDED"
    REVOKED = "REVOKED"
    # The stored envelope cannot be read (a damaged row): nothing can rely on it.
    UNUSABLE = "UNUSABLE"


def compute_status(
    *,
    valid_from: datetime.date,
    valid_until: datetime.date | None,
    today: datetime.date,
    revoked: bool,
    superseded: bool,
) -> CertificateStatus:
    """The status on ``today``; ``valid_until`` is the last valid day (None = no expiry).

    Precedence REVOKED > SUPERSEDED > NOT_YET_VALID > EXPIRED > VALID: an act of the issuer
    outranks the calendar, and revocation is the one a window must never miss.
    """
    if revoked:
        return CertificateStatus.REVOKED
    if superseded:
        return CertificateStatus.SUPERSEDED
    if today < valid_from:
        return CertificateStatus.NOT_YET_VALID
    if valid_until is not None and today > valid_until:
        return CertificateStatus.EXPIRED
    return CertificateStatus.VALID
