"""The registry as an immutable model: departments and their keys, certificate types,
service items and their materials, principals, settings.

``certhub.hub.registry.validator`` builds it from ``registry.toml``; every hub process keeps one
``Registry`` per applied file and reads it without locks, so nothing here changes after
construction.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING

from certhub.hub.domain.certificate import CertificateKind
from certhub.signing.keys import KeyStatus, TrustedKey

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "CertificateType",
    "Department",
    "Material",
    "Principal",
    "RateLimitSpec",
    "Registry",
    "Role",
    "ServiceItem",
    "Settings",
    "registry_digest",
]


class Role(StrEnum):
    DEPARTMENT = "DEPARTMENT"
    INTAKE = "INTAKE"
    AUDITOR = "AUDITOR"
    OPERATOR = "OPERATOR"
    # The government app that has authenticated an applicant and acts for that one
    # applicant: consent, presentation tokens, their own access history, export.
    CITIZEN_APP = "CITIZEN_APP"


@dataclass(frozen=True)
class RateLimitSpec:
    """A token bucket: ``per_second`` refill rate, ``burst`` capacity."""

    per_second: float
    burst: int


@dataclass(frozen=True)
class Department:
    """An issuing department (颁发机构) with its keys and the types it may issue.

    ``legacy_uscc`` flags a code let through by ``accept_legacy_uscc`` although its check
    character is wrong.
    """

    code: str
    name: str
    keys: tuple[TrustedKey, ...]
    type_codes: frozenset[str]
    legacy_uscc: bool = False


@dataclass(frozen=True)
class CertificateType:
    code: str
    name: str
    kind: CertificateKind
    issuer_codes: tuple[str, ...]


@dataclass(frozen=True)
class Material:
    """A required material of a service item and the certificate types that satisfy it."""

    code: str
    name: str
    type_codes: tuple[str, ...]

    @property
    def paper_only(self) -> bool:
        """No e-certificate satisfies it: the applicant must still bring paper."""
        return not self.type_codes


@dataclass(frozen=True)
class ServiceItem:
    code: str
    name: str
    materials: tuple[Material, ...]
    #: Sharing for this item needs the applicant's explicit approval (consent and preview).
    #: Default false: the law lets a window fetch for a case the applicant opened in person
    #: (e.g. 免证办); an item whose rules require approval says ``consent_required = true``.
    consent_required: bool = False

    @property
    def exempt(self) -> bool:
        """免证: every required material can be satisfied by an e-certificate."""
        return bool(self.materials) and not any(m.paper_only for m in self.materials)

    @property
    def satisfying_types(self) -> frozenset[str]:
        """The only types a fetch for this item may return (data minimisation)."""
        return frozenset(code for m in self.materials for code in m.type_codes)


@dataclass(frozen=True)
class Principal:
    """A client identity: ``name`` is the CN of its client certificate."""

    name: str
    role: Role
    department_code: str | None
    service_items: frozenset[str]
    rate_limit: RateLimitSpec | None


@dataclass(frozen=True)
class Settings:
    accept_legacy_uscc: bool = False
    log_origin: str | None = None


@dataclass(frozen=True)
class Registry:
    """Everything the hub knows from ``registry.toml``; mappings are read-only, in file order."""

    settings: Settings
    departments: Mapping[str, Department]
    types: Mapping[str, CertificateType]
    service_items: Mapping[str, ServiceItem]
    principals: Mapping[str, Principal]
    #: Every department key, by key id.
    keys: Mapping[str, TrustedKey]
    #: Hex SHA-256 of the source text (see ``registry_digest``).
    digest: str

    @functools.cached_property
    def compromised_key_ids(self) -> frozenset[str]:
        """Keys whose signatures the hub no longer trusts, whatever they signed and when."""
        return frozenset(k for k, key in self.keys.items() if key.status is KeyStatus.COMPROMISED)

    @classmethod
    def empty(cls) -> Registry:
        """The registry of a hub to which no file has been applied yet."""
        return cls(
            settings=Settings(),
            departments=MappingProxyType({}),
            types=MappingProxyType({}),
            service_items=MappingProxyType({}),
            principals=MappingProxyType({}),
            keys=MappingProxyType({}),
            digest=registry_digest(""),
        )


def registry_digest(text: str) -> str:
    """Hex SHA-256 of the UTF-8 text: identifies which file a hub process is running with."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
