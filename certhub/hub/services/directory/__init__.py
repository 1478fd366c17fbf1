"""Registry data for any principal (DirectoryService's lookups), and the KPIs a district
publishes. The lookups are rules over a registry snapshot: a code or kind the registry does
not know is refused here, by name; ``Hub`` audits the refusal.

The lookups and the KPIs' shape need no database (``rules``); counting them is ``store``'s.
Callers import from ``certhub.hub.services.directory``.
"""

from __future__ import annotations

from certhub.hub.services.directory.rules import (
    Stats,
    certificate_types,
    issuer_departments,
    service_item,
)
from certhub.hub.services.directory.store import compute_stats

__all__ = ["Stats", "certificate_types", "compute_stats", "issuer_departments", "service_item"]
