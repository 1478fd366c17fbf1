"""Cases (办件) as windows handle them: registered when accepted, closed with how each
required material was satisfied.

The reform's usage rate (电子应用率) divides the cases that used an e-certificate by every
case handled, including cases that never called the hub. Only the window knows those, so it
reports each case here; fetches name the same case number, which links them to it.

The rules that need no database (``rules``) apart from the SQL (``store``). Callers import
from ``certhub.hub.services.cases``.
"""

from __future__ import annotations

from certhub.hub.domain.status import CST
from certhub.hub.services.cases.rules import (
    MAX_CERTIFICATE_ID_LENGTH,
    MAX_MATERIALS,
    MAX_WINDOW_LENGTH,
    Channel,
    Closed,
    CloseInput,
    MaterialSource,
    MaterialUse,
    Registered,
    RegisterInput,
    Registration,
    check_close,
    check_register,
    month_of,
)
from certhub.hub.services.cases.store import close_case, register_case

__all__ = [
    "CST",
    "MAX_CERTIFICATE_ID_LENGTH",
    "MAX_MATERIALS",
    "MAX_WINDOW_LENGTH",
    "Channel",
    "CloseInput",
    "Closed",
    "MaterialSource",
    "MaterialUse",
    "RegisterInput",
    "Registered",
    "Registration",
    "check_close",
    "check_register",
    "close_case",
    "month_of",
    "register_case",
]
