"""The department systems an adapter reads: SQL databases and folders of export files."""

from __future__ import annotations

from certhub.adapters.config import FilesSourceConfig, SqlSourceConfig
from certhub.adapters.records import Source
from certhub.adapters.sources.files import FilesSource
from certhub.adapters.sources.sql import SqlSource

__all__ = ["FilesSource", "SqlSource", "open_source"]


def open_source(config: SqlSourceConfig | FilesSourceConfig) -> Source:
    if isinstance(config, SqlSourceConfig):
        return SqlSource(config)
    return FilesSource(config)
