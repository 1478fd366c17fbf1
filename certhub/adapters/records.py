"""What a source yields: records, problems and checkpoints, in the order it read them.

A ``Source`` streams items; the adapter signs each record into the outbox and stores every
``Checkpoint`` in the same SQLite transaction as the records before it. A crash therefore
never moves a watermark past a record that is not safely in the outbox, and a record read
twice is recognised by its unchanged change marker.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Checkpoint", "Problem", "Source", "SourceItem", "SourceRecord", "StateView"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceRecord:
    """One row of the department's data.

    ``key`` identifies the record for ever (same record, same certificate id); ``marker``
    changes whenever the record's content changes (a new certificate version); ``location``
    tells an operator where to look (``file.csv:17`` or ``table [reg_no=...]``).
    """

    key: str
    marker: str
    location: str
    values: Mapping[str, object]


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """Something the source could not read at all (bad line, wrong encoding); skipped."""

    location: str
    message: str
    key: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """Progress to persist once every item before it is in the outbox."""

    name: str
    value: str


SourceItem = SourceRecord | Problem | Checkpoint


class StateView(Protocol):
    """Read access to the checkpoints stored by earlier runs."""

    def checkpoint(self, name: str) -> str | None: ...


class Source(Protocol):
    """A department system the adapter reads from."""

    @property
    def description(self) -> str: ...

    def read(self, state: StateView) -> Iterator[SourceItem]:
        """Everything new or changed since the stored checkpoints, streamed."""
        ...

    def estimate(self, state: StateView) -> int | None:
        """How many records ``read`` will yield, if cheaply known (for progress ETA)."""
        ...
