"""No raw personal ID in the audit log: the rule for free text that reaches a leaf.

The log is permanent and public to auditors (and, through receipts, to citizens), so a
holder's ID is only ever in it as its HMAC commitment (``entry.holder_commitment``). Free
text a caller controls can smuggle an ID in anyway: a case number typed as the applicant's
resident ID, a refused call's service-item code or certificate id, an audit query's filter,
a client certificate's CN. The rule, applied to every such field of every entry
(``AuditRecord``):

- A run shaped like a personal or enterprise ID is replaced by a marker naming its shape:
  an 18-character resident ID (17 digits and a check digit or X), any run of 15 or more
  digits (old 15-digit resident IDs, bank cards), a mainland mobile number (11 digits
  starting 13-19), and an 18-character USCC whose check character is right. The marker
  says what was there (``[resident-id]``), never the characters.
- A certificate id that is a well-formed GB/T 36904 identifier is kept: its 18-character
  part is the issuing department's code, not the holder's. Certificate ids of entries that
  succeeded are ids the hub stored and are kept too; those of refusals (ids a caller asked
  for) follow the rule.
- Case numbers are refused before that when they are ID-shaped (``check_case_number``,
  ``INVALID_ARGUMENT`` reason ``ID_SHAPED_CASE_NUMBER``): a case number is stored in the
  KPI tables as well, and the window should send the case's own number.

Redaction, not a keyed commitment: the marker keeps the entry readable ("someone typed a
resident ID into the case field") and needs no key where records are built.
"""

from __future__ import annotations

import re

from certhub.core.codes import USCC_ALPHABET, uscc_check_char
from certhub.hub.domain.identifier import GBT_PREFIX, certificate_id_violations
from certhub.hub.errors import InvalidArgument

# Alternatives tried left to right at each position: the most specific shape first.
_NUMBERS = (
    r"(?P<resident>(?<!\d)\d{17}[\dXx](?![\dXx]))"
    r"|(?P<digits>\d{15,})"
    r"|(?P<mobile>(?<!\d)1[3-9]\d{9}(?!\d))"
)
_ID_SHAPED = re.compile(
    r"(?P<resident_first>(?<!\d)\d{17}[\dXx](?![\dXx]))"
    rf"|(?P<uscc>(?<![0-9A-Za-z])[{USCC_ALPHABET}{USCC_ALPHABET.lower()}]{{18}}(?![0-9A-Za-z]))"
    rf"|{_NUMBERS}"
)
# For an 18-character run that turned out not to be a USCC: its digits still count.
_NUMBERS_ONLY = re.compile(_NUMBERS)
_MARKERS = {
    "resident": "[resident-id]",
    "digits": "[digits]",
    "mobile": "[mobile]",
    "uscc": "[uscc]",
}


def _replace(match: re.Match[str]) -> str:
    kind = match.lastgroup or "digits"
    if kind == "uscc":
        code = match.group().upper()
        if uscc_check_char(code[:-1]) != code[-1]:
            # 18 letters and digits that are not a USCC
            return _NUMBERS_ONLY.sub(_replace, match.group())
    return _MARKERS["resident" if kind == "resident_first" else kind]


def redact(text: str) -> str:
    """``text`` with every ID-shaped run replaced by the marker of its shape."""
    return _ID_SHAPED.sub(_replace, text)


def id_shape(text: str) -> str | None:
    """The marker of the first ID-shaped run in ``text``, or None."""
    redacted = redact(text)
    if redacted == text:
        return None
    return next(m for m in _MARKERS.values() if m in redacted)


def redact_certificate_id(certificate_id: str) -> str:
    """A GB/T 36904 identifier is kept whole (its USCC is the issuer's); anything else
    follows ``redact``."""
    if certificate_id.startswith(GBT_PREFIX) and not certificate_id_violations(
        certificate_id, type_code=None, issuer=None, version=None, field="certificate_id"
    ):
        return certificate_id
    return redact(certificate_id)


def check_case_number(case_number: str, *, field: str = "case_number") -> None:
    """Refuse an ID-shaped case number, naming the shape and not echoing the ID."""
    shape = id_shape(case_number)
    if shape is not None:
        raise InvalidArgument.field(
            field,
            f"contains what looks like a personal or enterprise ID ({shape}); send the case's "
            "own number: the audit log and the case records never hold raw IDs",
            reason="ID_SHAPED_CASE_NUMBER",
        )


def check_window(window: str, *, field: str = "window") -> None:
    """Refuse an ID-shaped acceptance point (RegisterCase's ``window``, kept in the case
    records), naming the shape and not echoing the ID."""
    shape = id_shape(window)
    if shape is not None:
        raise InvalidArgument.field(
            field,
            f"contains what looks like a personal or enterprise ID ({shape}); name the "
            "acceptance point (e.g. its hall and window number): the case records never hold "
            "raw IDs",
            reason="ID_SHAPED_WINDOW",
        )
