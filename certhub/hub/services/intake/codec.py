"""A holder's view as the bytes the holder cache keeps (``certhub.hub.caching.HolderScopes``)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import operator
import typing
from collections.abc import Callable
from typing import Any, cast

from certhub.hub.services.intake.rules import STORED_FIELDS, HolderView, StoredCertificate

# Bumped whenever encode_holder changes what the bytes mean (a field of StoredCertificate
# added, removed or retyped does), so hubs of two releases on one Redis never decode each
# other's entries (certhub.hub.caching names its holder namespace with it).
HOLDER_SCHEMA_VERSION = 4

# JSON has no bytes or dates: fields of those types travel as base64 and ISO 8601 text; the
# rest as themselves. Derived from StoredCertificate's annotations, so a new field is
# cached without touching the codec (and a field of a type JSON cannot carry fails here).
_JSON_FORMS: dict[type, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    bytes: (lambda b: base64.b64encode(b).decode(), base64.b64decode),
    dt.date: (dt.date.isoformat, dt.date.fromisoformat),
}
_JSON_NATIVE = frozenset({str, int, bool, type(None)})


def _json_forms() -> tuple[tuple[int, Callable[[Any], Any], Callable[[Any], Any]], ...]:
    forms = []
    for i, (name, hint) in enumerate(typing.get_type_hints(StoredCertificate).items()):
        kinds = set(typing.get_args(hint) or (hint,))
        converted = kinds & _JSON_FORMS.keys()
        if len(converted) > 1 or not kinds - converted <= _JSON_NATIVE:
            raise TypeError(f"StoredCertificate.{name}: no JSON form for {hint}")
        if converted:
            forms.append((i, *_JSON_FORMS[converted.pop()]))
    return tuple(forms)


# (field position, encode, decode) of the fields that need converting; None stays null.
_CONVERTED = _json_forms()
_field_values = operator.attrgetter(*STORED_FIELDS)


def encode_holder(view: HolderView) -> bytes:
    """The view as JSON: its counter, then a list per certificate of its fields in order."""
    rows = []
    for certificate in view.certificates:
        row = list(_field_values(certificate))
        for i, encode, _ in _CONVERTED:
            if row[i] is not None:
                row[i] = encode(row[i])
        rows.append(row)
    return json.dumps([view.version, rows], separators=(",", ":")).encode()


def decode_holder(data: bytes) -> HolderView:
    version, rows = cast("tuple[int, list[list[Any]]]", json.loads(data))
    return HolderView(version, [_decode_one(row) for row in rows])


def _decode_one(row: list[Any]) -> StoredCertificate:
    for i, _, decode in _CONVERTED:
        if row[i] is not None:
            row[i] = decode(row[i])
    return StoredCertificate(*row)
