"""The registry file (``registry.toml``) as a validated, immutable model.

Three jobs, one module each: ``model`` (the immutable ``Registry`` and its parts),
``validator`` (TOML text to a ``Registry``, or a ``RegistryError`` naming every problem
and its line) and ``locator`` (where in the text a value is written, for those lines).
Import from ``certhub.hub.registry``: this is the public surface.

``docs/registry.example.toml`` is the documented, complete example of the format.
"""

from __future__ import annotations

from certhub.hub.registry.model import (
    CertificateType,
    Department,
    Material,
    Principal,
    RateLimitSpec,
    Registry,
    Role,
    ServiceItem,
    Settings,
    registry_digest,
)
from certhub.hub.registry.validator import (
    MAX_REGISTRY_BYTES,
    PRINCIPAL_NAME_MAX_LENGTH,
    RegistryError,
    RegistryProblem,
    load_registry_file,
    parse_registry,
    principal_name_problem,
)

__all__ = [
    "MAX_REGISTRY_BYTES",
    "PRINCIPAL_NAME_MAX_LENGTH",
    "CertificateType",
    "Department",
    "Material",
    "Principal",
    "RateLimitSpec",
    "Registry",
    "RegistryError",
    "RegistryProblem",
    "Role",
    "ServiceItem",
    "Settings",
    "load_registry_file",
    "parse_registry",
    "principal_name_problem",
    "registry_digest",
]
