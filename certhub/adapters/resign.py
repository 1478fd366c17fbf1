"""Rejected items signed afresh: after a mapping fix (or a key rotation) the envelopes the
hub rejected are stale, and sending them again only repeats the rejection.

``resign_rejected`` reads the source again in full (checkpoints ignored: the rejected rows
were read long ago), maps each rejected push's record with today's config, signs it with
today's key as the same version, and queues it again in place of the stale envelope. A
rejected revocation is signed again as it was (same certificate, reason and time) with the
key valid on its day. What cannot be re-signed stays rejected, with the reason.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field, replace

from certhub.adapters.config import AdapterConfig
from certhub.adapters.mapping import Mapper, MappingFailed
from certhub.adapters.outbox import ItemKind, Outbox, OutboxItem
from certhub.adapters.producer import KeyRing
from certhub.adapters.records import Source, SourceRecord
from certhub.signing import (
    CERTIFICATE_PAYLOAD_TYPE,
    REVOCATION_PAYLOAD_TYPE,
    MalformedEnvelope,
    parse_envelope,
    sign_envelope,
)

__all__ = ["ResignReport", "resign_rejected"]


@dataclass(slots=True)
class ResignReport:
    requeued: int = 0
    #: (item, why it stays rejected)
    left: list[tuple[OutboxItem, str]] = field(default_factory=list)


class _FromTheStart:
    """A state view without checkpoints: the source reads everything."""

    def checkpoint(self, name: str) -> str | None:
        del name
        return None


def resign_rejected(
    config: AdapterConfig, *, source: Source, keys: KeyRing, outbox: Outbox
) -> ResignReport:
    report = ResignReport()
    rejected = outbox.rejected()
    states = outbox.record_states(item.source_key for item in rejected)
    wanted: dict[str, OutboxItem] = {}
    for item in rejected:
        if item.kind is ItemKind.REVOKE:
            _revocation(item, keys, outbox, report)
            continue
        state = states.get(item.source_key)
        if state is None or state.version != item.version:
            later = "" if state is None else f" (version {state.version} came later)"
            report.left.append((item, f"not the record's latest version{later}; dismiss it"))
            continue
        wanted[item.source_key] = item
    if not wanted:
        return report
    found: dict[str, SourceRecord] = {}
    for read in source.read(_FromTheStart()):
        if isinstance(read, SourceRecord) and read.key in wanted:
            found[read.key] = read  # a later export of the same record wins
    mapper = Mapper(config)
    for key, item in wanted.items():
        record = found.get(key)
        if record is None:
            report.left.append((item, "no longer in the source"))
            continue
        try:
            mapped = mapper.map(record)
            certificate_id = mapped.certificate_id(item.version)
            payload = mapped.payload(certificate_id, item.version)
        except (MappingFailed, ValueError) as exc:
            report.left.append((item, f"still cannot be mapped: {exc}"))
            continue
        envelope = sign_envelope(
            CERTIFICATE_PAYLOAD_TYPE, payload, [keys.for_date(mapped.issued_on)]
        ).to_json()
        state = states[key]
        # The new envelope carries the record as it is now; a cancellation the record has
        # picked up meanwhile is left for the next pass to notice (its marker stays).
        marker = record.marker if mapped.revoked == state.revoked else state.marker
        outbox.requeue(
            item.id,
            certificate_id=certificate_id,
            envelope=envelope,
            attachment=mapped.attachment,
            record=(key, replace(state, marker=marker, certificate_id=certificate_id)),
        )
        report.requeued += 1
    return report


def _revocation(item: OutboxItem, keys: KeyRing, outbox: Outbox, report: ResignReport) -> None:
    try:
        payload = parse_envelope(item.envelope).payload
        revoked_at = dt.datetime.fromisoformat(str(json.loads(payload)["revoked_at"]))
    except (MalformedEnvelope, ValueError, KeyError, TypeError) as exc:
        report.left.append((item, f"its stored revocation cannot be read: {exc}"))
        return
    envelope = sign_envelope(
        REVOCATION_PAYLOAD_TYPE, payload, [keys.for_date(revoked_at.date())]
    ).to_json()
    outbox.requeue(item.id, certificate_id=item.certificate_id, envelope=envelope, attachment=None)
    report.requeued += 1
