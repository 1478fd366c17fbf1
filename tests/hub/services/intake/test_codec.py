"""The holder cache's bytes carry every field of StoredCertificate, the one list of what is
read of a stored certificate; a field the codec dropped fails here."""

from __future__ import annotations

import dataclasses
import datetime as dt
import typing

from certhub.hub.services import intake
from certhub.hub.services.intake.codec import HOLDER_SCHEMA_VERSION

NOW = dt.datetime(2026, 11, 28, tzinfo=dt.UTC)

# A value of each annotated type that is neither a default nor falsy, so that a field the
# codec dropped or swapped cannot compare equal by accident.
_SAMPLES: dict[type, list[object]] = {
    str: ["a", "b", "c", "d", "e", "f"],
    int: [7],
    bool: [True],
    bytes: [b"\x00envelope", b"revocation\xff"],
    dt.date: [dt.date(2024, 1, 2), dt.date(2031, 3, 4)],
}


def _every_field_set() -> intake.StoredCertificate:
    values = {}
    used: dict[type, int] = {}
    for name, hint in typing.get_type_hints(intake.StoredCertificate).items():
        kind = next(k for k in (typing.get_args(hint) or (hint,)) if k is not type(None))
        index = used.get(kind, 0)
        used[kind] = index + 1
        values[name] = _SAMPLES[kind][index]
    return intake.StoredCertificate(**values)


def test_the_cache_codec_carries_every_field() -> None:
    stored = _every_field_set()
    view = intake.HolderView(3, [stored, dataclasses.replace(stored, valid_until=None)])
    assert intake.decode_holder(intake.encode_holder(view)) == view


def test_the_cached_bytes_are_those_of_the_schema_version() -> None:
    # Changing what the bytes mean needs HOLDER_SCHEMA_VERSION bumped (beside the codec), and
    # this expectation with it.
    stored = intake.StoredCertificate(
        certificate_id="C1",
        version=2,
        type_code="T",
        is_current=False,
        valid_from=dt.date(2024, 1, 2),
        valid_until=None,
        envelope=b"env",
        attachment_sha256=None,
        revocation_envelope=b"rev",
        key_id="k",
        envelope_sha256="e",
        unusable="bad",
    )
    assert HOLDER_SCHEMA_VERSION == 4
    assert intake.encode_holder(intake.HolderView(7, [stored])) == (
        b'[7,[["C1",2,"T",false,"2024-01-02",null,"ZW52",null,"cmV2","k","e","bad"]]]'
    )
