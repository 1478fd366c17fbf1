"""The adapter's one error hierarchy. Messages name the file, key or column that is wrong."""

from __future__ import annotations

__all__ = ["AdapterError", "ConfigError", "HubRefused", "SourceError"]


class AdapterError(Exception):
    """Base of every error the adapter raises on purpose; the CLI prints it without a trace."""


class ConfigError(AdapterError):
    """The adapter's TOML config (or a file it names) is missing or invalid."""


class SourceError(AdapterError):
    """The department's database or export folder cannot be read at all."""


class HubRefused(AdapterError):
    """The hub refuses the whole connection (not one item): wrong certificate, wrong role.

    Retrying does not help; the operator has to fix the configuration or the registry.
    """
