"""Department adapters: from a department's database or export files to signed certificates
in the hub, losing nothing.

A ``Source`` streams records; the mapping of the adapter's TOML config turns each into a
certificate payload; the department key signs it; the durable outbox holds it until the
hub acknowledged it; the pusher streams the outbox through ``PushCertificates``.
Depends on ``signing`` and the generated ``certhub.v1`` stubs only, never on ``hub``.
"""

from certhub.adapters.config import AdapterConfig, load_config
from certhub.adapters.errors import AdapterError, ConfigError, HubRefused, SourceError
from certhub.adapters.outbox import Outbox, StatusReport
from certhub.adapters.records import Checkpoint, Problem, Source, SourceItem, SourceRecord
from certhub.adapters.runner import Adapter, PassReport

__all__ = [
    "Adapter",
    "AdapterConfig",
    "AdapterError",
    "Checkpoint",
    "ConfigError",
    "HubRefused",
    "Outbox",
    "PassReport",
    "Problem",
    "Source",
    "SourceError",
    "SourceItem",
    "SourceRecord",
    "StatusReport",
    "load_config",
]
