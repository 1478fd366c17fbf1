"""Reads the source, maps and signs each new or changed record, and stores the envelopes in
the outbox together with the record states and checkpoints (one transaction per batch)."""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from certhub.adapters.config import AdapterConfig
from certhub.adapters.errors import ConfigError
from certhub.adapters.mapping import Mapped, Mapper, MappingFailed
from certhub.adapters.outbox import ItemKind, NewItem, Outbox, RecordState, WriteBatch
from certhub.adapters.records import Checkpoint, Problem, Source, SourceItem, SourceRecord
from certhub.core.identifier import MAX_VERSION
from certhub.core.payload import revocation_payload_json
from certhub.signing import (
    CERTIFICATE_PAYLOAD_TYPE,
    REVOCATION_PAYLOAD_TYPE,
    MalformedKey,
    PrivateKey,
    sign_envelope,
)

__all__ = ["KeyRing", "ProduceCounts", "Producer", "load_signing_key"]

log = logging.getLogger("certhub.adapter.producer")


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyRing:
    """The department's signing keys: the current one, and during a rotation the next one,
    which takes over for everything dated from its ``not_before`` once that day has come.

    The hub checks a certificate's signature against the key valid on its issue date, and a
    revocation's against the key valid on its day: a new version of a licence issued before
    the rotation is still signed with the current key, which therefore stays configured
    (and registered, retired with its ``not_after``) for as long as such records change.
    """

    current: PrivateKey
    next: PrivateKey | None = None
    next_not_before: dt.date | None = None

    def for_date(self, signed_on: dt.date, *, today: dt.date | None = None) -> PrivateKey:
        start = self.next_not_before
        if self.next is None or start is None:
            return self.current
        today = today or dt.datetime.now(dt.UTC).date()
        return self.next if signed_on >= start and today >= start else self.current


def load_signing_key(config: AdapterConfig) -> KeyRing:
    d = config.department
    current = _load_key(
        d.signing_key, d.key_password_env, "[department].signing_key", "key_password_env"
    )
    if d.next_signing_key is None:
        return KeyRing(current=current)
    following = _load_key(
        d.next_signing_key,
        d.next_key_password_env,
        "[department].next_signing_key",
        "next_key_password_env",
    )
    if following.public_key.key_id == current.public_key.key_id:
        raise ConfigError("[department].next_signing_key: is the same key as signing_key")
    return KeyRing(current=current, next=following, next_not_before=d.next_key_not_before)


def _load_key(path: Path, password_env: str | None, where: str, env_key: str) -> PrivateKey:
    password = None
    if password_env:
        value = os.environ.get(password_env)
        if value is None:
            raise ConfigError(f"[department].{env_key}: {password_env} is not set")
        password = value.encode("utf-8")
    try:
        return PrivateKey.from_pem(path.read_bytes(), password)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {path} ({exc.strerror})") from exc
    except MalformedKey as exc:
        raise ConfigError(f"{where}: {path}: {exc}") from exc


@dataclass(slots=True)
class ProduceCounts:
    read: int = 0
    unchanged: int = 0
    pushes: int = 0
    revocations: int = 0
    problems: int = 0


class Producer:
    def __init__(
        self,
        *,
        config: AdapterConfig,
        source: Source,
        keys: KeyRing,
        stop: threading.Event,
        on_batch: Callable[[int, int], None] = lambda rows, items: None,
    ) -> None:
        self._config = config
        self._source = source
        self._keys = keys
        self._mapper = Mapper(config)
        self._stop = stop
        # (rows read, items signed) per committed batch: the progress total's correction.
        self._on_batch = on_batch
        self._batch_size = config.source.batch_size
        self.counts = ProduceCounts()

    def run(self) -> ProduceCounts:
        with Outbox(self._config.outbox.path) as outbox:
            buffer: list[SourceItem] = []
            reader = self._source.read(outbox)
            try:
                for item in reader:
                    buffer.append(item)
                    if len(buffer) >= self._batch_size:
                        self._flush(outbox, buffer)
                        buffer = []
                    if self._stop.is_set():
                        break
            finally:
                close = getattr(reader, "close", None)
                if close is not None:
                    close()
            self._flush(outbox, buffer)
        return self.counts

    def _flush(self, outbox: Outbox, buffer: list[SourceItem]) -> None:
        if not buffer:
            return
        keys = [i.key for i in buffer if isinstance(i, SourceRecord)]
        known = outbox.record_states(keys)
        batch = WriteBatch()
        rows = sum(1 for i in buffer if not isinstance(i, Checkpoint))
        for item in buffer:
            if isinstance(item, SourceRecord):
                self.counts.read += 1
                state = batch.records.get(item.key) or known.get(item.key)
                self._record(item, state, batch)
            elif isinstance(item, Problem):
                self.counts.problems += 1
                batch.problems.append((item.location, item.key, item.message))
            elif isinstance(item, Checkpoint):
                batch.checkpoints[item.name] = item.value
        for location, _, message in batch.problems:
            log.warning("%s: %s (skipped)", location, message)
        outbox.write(batch)
        self._on_batch(rows, len(batch.items))

    def _record(self, record: SourceRecord, state: RecordState | None, batch: WriteBatch) -> None:
        if state is not None and state.marker == record.marker:
            self.counts.unchanged += 1
            return
        try:
            mapped = self._mapper.map(record)
            self._changes(record, mapped, state, batch)
        except (MappingFailed, ValueError) as exc:
            self.counts.problems += 1
            batch.problems.append((record.location, record.key, str(exc)))

    def _changes(
        self, record: SourceRecord, mapped: Mapped, state: RecordState | None, batch: WriteBatch
    ) -> None:
        if state is not None and mapped.revoked and not state.revoked:
            # Cancelled: revoke what the hub has; the record's other changes do not matter.
            batch.items.append(
                self._revocation(record, state.certificate_id, state.version, mapped)
            )
            batch.records[record.key] = replace(state, marker=record.marker, revoked=True)
            return
        if state is not None and mapped.revoked and state.revoked:
            batch.records[record.key] = replace(state, marker=record.marker)
            return
        version = 1 if state is None else state.version + 1
        if version > MAX_VERSION:
            raise MappingFailed(f"version: the record changed more than {MAX_VERSION} times")
        certificate_id = mapped.certificate_id(version)
        envelope = sign_envelope(
            CERTIFICATE_PAYLOAD_TYPE,
            mapped.payload(certificate_id, version),
            [self._keys.for_date(mapped.issued_on)],
        ).to_json()
        batch.items.append(
            NewItem(
                kind=ItemKind.PUSH,
                source_key=record.key,
                location=record.location,
                certificate_id=certificate_id,
                version=version,
                envelope=envelope,
                attachment=mapped.attachment,
            )
        )
        self.counts.pushes += 1
        batch.records[record.key] = RecordState(
            marker=record.marker,
            version=version,
            certificate_id=certificate_id,
            revoked=mapped.revoked,
            last_push_id=None if state is None else state.last_push_id,
        )
        if mapped.revoked:
            # First seen already cancelled (a backfill of history): the certificate is
            # pushed, then revoked, so the hub knows it existed and that it is cancelled.
            batch.items.append(self._revocation(record, certificate_id, version, mapped))

    def _revocation(
        self, record: SourceRecord, certificate_id: str, version: int, mapped: Mapped
    ) -> NewItem:
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        payload = revocation_payload_json(
            certificate_id=certificate_id, reason=mapped.revocation_reason, revoked_at=now
        )
        self.counts.revocations += 1
        return NewItem(
            kind=ItemKind.REVOKE,
            source_key=record.key,
            location=record.location,
            certificate_id=certificate_id,
            version=version,
            envelope=sign_envelope(
                REVOCATION_PAYLOAD_TYPE, payload, [self._keys.for_date(now.date())]
            ).to_json(),
        )
