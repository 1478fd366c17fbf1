"""From a source record to the certificate payload of DESIGN.md, as the config says.

The mapping only *transcribes*: a value it cannot find or parse (a missing column, an empty
issue date, a date in no configured format, a type it has no code for) is a ``MappingFailed``
naming the payload field and the column; whether a holder ID's check character is right is
the hub's rule, answered with a REJECTED result the outbox keeps for the operator.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from certhub.adapters.config import AdapterConfig, MappingConfig, TypeConfig, ValueSpec
from certhub.adapters.identifier import derived_serial
from certhub.adapters.records import SourceRecord
from certhub.core.identifier import gbt_identifier, is_serial
from certhub.core.payload import canonical_json

__all__ = ["Mapped", "Mapper", "MappingFailed"]

# An attachment's media type from its file name: one for each of the hub's
# certhub.core.payload.ATTACHMENT_MEDIA_TYPES (tests/core/test_written_once.py).
_MEDIA_TYPES = {
    ".pdf": "application/pdf",
    ".ofd": "application/ofd",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
}


_ISO_FORMAT = "%Y-%m-%d"
_ISO_LENGTH = len("2024-03-01")


class MappingFailed(Exception):
    """A record the mapping cannot turn into a payload; the message names field and column."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Mapped:
    """A record's certificate, complete except for its version (which the state decides)."""

    type_code: str
    serial: str
    revoked: bool
    revocation_reason: str
    attachment: bytes | None
    document: Mapping[str, object]
    id_template: str | None
    issuer: str
    issued_on: dt.date

    def certificate_id(self, version: int) -> str:
        if self.id_template is not None:
            # Issuer-unique ids keep one id across versions (DESIGN.md).
            return self.id_template
        return gbt_identifier(
            type_code=self.type_code, issuer=self.issuer, serial=self.serial, version=version
        )

    def payload(self, certificate_id: str, version: int) -> bytes:
        return canonical_json(
            {**self.document, "certificate_id": certificate_id, "version": version}
        )


class Mapper:
    def __init__(self, config: AdapterConfig) -> None:
        self._m: MappingConfig = config.mapping
        self._issuer = {"code": config.department.code, "name": config.department.name}
        self._types: dict[str, TypeConfig] = {}
        for t in config.types:
            self._types[t.code] = t
            for value in t.values:
                self._types[value] = t

    def map(self, record: SourceRecord) -> Mapped:
        m = self._m
        values = record.values
        type_value = _required(m.type, values, "type")
        ctype = self._types.get(type_value)
        if ctype is None:
            known = ", ".join(sorted(self._types))
            raise MappingFailed(
                f"type: unknown certificate type {type_value!r}{_from(m.type)}; "
                f"configured [[types]] codes and values: {known}"
            )
        issued_on = _date(m.issued_on, values, "issued_on")
        valid_from = _date(m.valid_from, values, "valid_from")
        valid_until = None
        if m.valid_until is not None:
            # An empty expiry cell is the usual way of saying "no expiry" (营业执照 长期).
            valid_until = _optional_date(m.valid_until, values, "valid_until", empty_ok=True)
        serial = derived_serial(record.key)
        if m.serial is not None:
            serial = _required(m.serial, values, "serial").upper()
            if not is_serial(serial):
                raise MappingFailed(
                    f"serial: {serial!r}{_from(m.serial)} is not 1-64 characters of 0-9A-Z"
                )
        id_template = None
        if m.certificate_id_template is not None:
            try:
                id_template = m.certificate_id_template.format(
                    serial=serial, key=record.key, type_code=ctype.code, issuer=self._issuer["code"]
                )
            except (KeyError, IndexError, ValueError) as exc:
                raise MappingFailed(f"certificate_id_template: cannot fill it in ({exc})") from exc
        fields: dict[str, str] = {}
        for label, spec in m.fields.items():
            value = _value(spec, values, f"fields.{label}")
            if value is not None:
                fields[label] = value
        attachment, attachment_meta = self._attachment(values)
        revoked, reason = False, ""
        if m.status is not None:
            status = _value(m.status, values, "status")
            revoked = status is not None and status in m.revoked_values
            if revoked:
                assert status is not None
                reason = status
                if m.revocation_reason is not None:
                    reason = _value(m.revocation_reason, values, "revocation_reason") or status
        document: dict[str, object] = {
            "type_code": ctype.code,
            "name": ctype.name,
            "kind": ctype.kind,
            "number": _required(m.number, values, "number"),
            "holder": {
                "id_type": _required(m.holder_id_type, values, "holder_id_type"),
                "id": _required(m.holder_id, values, "holder_id"),
                "name": _required(m.holder_name, values, "holder_name"),
            },
            "issuer": self._issuer,
            "issued_on": issued_on.isoformat(),
            "valid_from": valid_from.isoformat(),
            "valid_until": None if valid_until is None else valid_until.isoformat(),
            "fields": fields,
            "attachment": attachment_meta,
        }
        return Mapped(
            type_code=ctype.code,
            serial=serial,
            revoked=revoked,
            revocation_reason=reason,
            attachment=attachment,
            document=document,
            id_template=id_template,
            issuer=self._issuer["code"],
            issued_on=issued_on,
        )

    def _attachment(
        self, values: Mapping[str, object]
    ) -> tuple[bytes | None, dict[str, object] | None]:
        spec = self._m.attachment
        if spec is None:
            return None, None
        name = _text(values.get(spec.column)) if spec.column in values else None
        if spec.column not in values:
            raise MappingFailed(f"attachment: column {spec.column!r} is missing")
        if not name:
            return None, None
        path = Path(name)
        path = path if path.is_absolute() else spec.base / path
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise MappingFailed(f"attachment: cannot read {path} ({exc.strerror})") from exc
        media_type = spec.media_type or _MEDIA_TYPES.get(path.suffix.lower())
        if media_type is None:
            raise MappingFailed(
                f"attachment: {path.name}: unknown file type; set [mapping.attachment].media_type"
            )
        meta = {
            "media_type": media_type,
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
        }
        return data, meta


def _from(spec: ValueSpec) -> str:
    return f" (column {spec.column!r})" if spec.column else ""


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    text = str(value).strip()
    return text or None


def _value(spec: ValueSpec, values: Mapping[str, object], what: str) -> str | None:
    if spec.value is not None:
        return spec.value
    assert spec.column is not None
    if spec.column not in values:
        raise MappingFailed(f"{what}: column {spec.column!r} is missing from the record")
    text = _text(values[spec.column])
    if text is not None and spec.values:
        text = spec.values.get(text, text)
    return text


def _required(spec: ValueSpec, values: Mapping[str, object], what: str) -> str:
    text = _value(spec, values, what)
    if text is None:
        raise MappingFailed(f"{what}: missing{_from(spec)}")
    return text


def _optional_date(
    spec: ValueSpec, values: Mapping[str, object], what: str, *, empty_ok: bool = False
) -> dt.date | None:
    if spec.column is not None and spec.column in values:
        raw = values[spec.column]
        if isinstance(raw, dt.datetime):
            return raw.date()
        if isinstance(raw, dt.date):
            return raw
    text = _value(spec, values, what)
    if text is None:
        if spec.optional or empty_ok:
            return None
        raise MappingFailed(f"{what}: missing{_from(spec)}")
    for fmt in spec.formats:
        if fmt == _ISO_FORMAT and len(text) == _ISO_LENGTH:
            # The common case, an order of magnitude faster than strptime.
            try:
                return dt.date.fromisoformat(text)
            except ValueError:
                continue
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise MappingFailed(
        f"{what}: {text!r}{_from(spec)} matches none of the date formats {list(spec.formats)}"
    )


def _date(spec: ValueSpec, values: Mapping[str, object], what: str) -> dt.date:
    date = _optional_date(spec, values, what)
    if date is None:
        raise MappingFailed(f"{what}: missing{_from(spec)}")
    return date
