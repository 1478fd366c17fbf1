"""Certificate and revocation payloads: strict parsing and canonical encoding.

The hub stores envelope bytes verbatim and indexes what ``parse_certificate_payload``
returns, so parsing is strict: exact JSON types, no unknown or duplicate keys, every
problem of a payload reported at once with the path of the field it concerns.
"""

from __future__ import annotations

import datetime
import functools
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TypeVar, cast

from certhub.core import payload as canonical
from certhub.core.payload import ATTACHMENT_MEDIA_TYPES, CertificateKind
from certhub.hub.domain.holder import CheckedHolder, Holder, check_holder, check_uscc
from certhub.hub.domain.identifier import (
    MAX_VERSION,
    certificate_id_violations,
    check_type_code,
    lineage_of,
)
from certhub.hub.errors import FieldViolation, InvalidArgument

__all__ = [
    "ATTACHMENT_MEDIA_TYPES",
    "MAX_ATTACHMENT_BYTES",
    "MAX_FIELDS",
    "MAX_FIELD_NAME_LENGTH",
    "MAX_FIELD_VALUE_LENGTH",
    "MAX_JSON_DEPTH",
    "MAX_NAME_LENGTH",
    "MAX_NUMBER_LENGTH",
    "MAX_REPORTED_VIOLATIONS",
    "MAX_REVOCATION_REASON_LENGTH",
    "Attachment",
    "CertificateKind",
    "CertificatePayload",
    "FrozenFields",
    "RevocationPayload",
    "certificate_payload_json",
    "parse_certificate_payload",
    "parse_revocation_payload",
    "revocation_payload_json",
]

#: The deepest valid payload nests two objects (payload > holder/issuer/fields/attachment);
#: 4 leaves room for nothing unexpected while stopping deeply nested input before the JSON
#: parser recurses into it.
MAX_JSON_DEPTH = 4
#: Registered enterprise and department names run to about 100 characters (long names of
#: branches and joint ventures); 256 also covers certificate titles with margin.
MAX_NAME_LENGTH = 256
#: Printed licence numbers (证照编号) are at most a few dozen characters.
MAX_NUMBER_LENGTH = 64
#: The busiest certificate faces (business licence, construction permit) print about 20
#: fields; 64 is generous and bounds the index rows one certificate can create.
MAX_FIELDS = 64
#: Field names are labels printed on the face (e.g. 经营范围, 法定代表人).
MAX_FIELD_NAME_LENGTH = 64
#: The longest face text is a business scope (经营范围), which runs to a few thousand
#: characters; 8192 covers it with margin.
MAX_FIELD_VALUE_LENGTH = 8192
#: A multi-page scanned licence in PDF or OFD stays below a few MiB; 20 MiB leaves room for
#: high-resolution scans while bounding what a window has to download for one certificate.
MAX_ATTACHMENT_BYTES = 20 * 1024 * 1024
#: Violations reported for one payload. The list travels in gRPC trailers
#: (google.rpc.BadRequest in grpc-status-details-bin), which servers and proxies cap at a
#: few KiB; a payload of thousands of unknown keys must not produce an unanswerable error.
MAX_REPORTED_VIOLATIONS = 20
#: Revocation reasons are a sentence or two (e.g. 企业申请注销登记).
MAX_REVOCATION_REASON_LENGTH = 512

_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TIMESTAMP_RE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})"
)
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_PLAIN_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
# A JSON string: it runs to its closing quote or, if it has none, to the end of the text
# (possessive, optional closing quote): the scan never restarts inside a string, so it stays
# linear even on hostile input such as "\"\"\"...
_JSON_STRING_RE = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"?', re.DOTALL)
# How much of a bad value or unknown key a message quotes: enough to recognise it.
_MAX_QUOTED = 64

_T = TypeVar("_T")
# CertificateKind by value: what CertificateKind(value) looks up, without the Enum call.
_KINDS: dict[str, CertificateKind] = {k.value: k for k in CertificateKind}

#: Issuer codes whose check is kept (see ``_issuer_code``): a district registers tens of
#: departments; payloads that name others only take turns in the cache.
_KNOWN_ISSUERS = 256
_ISSUER_CODE = "payload.issuer.code"

_REASON_PAYLOAD = "INVALID_PAYLOAD"
_REASON_REVOCATION = "INVALID_REVOCATION"
_ROOT = "payload"

_PAYLOAD_REQUIRED = frozenset(
    {
        "certificate_id",
        "type_code",
        "name",
        "kind",
        "number",
        "holder",
        "issuer",
        "issued_on",
        "valid_from",
        "valid_until",
        "version",
        "fields",
    }
)
_PAYLOAD_KEYS = _PAYLOAD_REQUIRED | {"attachment"}
_HOLDER_KEYS = frozenset({"id_type", "id", "name"})
_ISSUER_KEYS = frozenset({"code", "name"})
_ATTACHMENT_KEYS = frozenset({"media_type", "sha256", "size"})
_REVOCATION_KEYS = frozenset({"certificate_id", "reason", "revoked_at"})


class FrozenFields(Mapping[str, str]):
    """An immutable, hashable ``str -> str`` mapping (a certificate's face fields)."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, str] | None = None) -> None:
        self._items: dict[str, str] = dict(items or {})

    def __getitem__(self, key: str) -> str:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._items == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenFields({self._items!r})"


@dataclass(frozen=True, kw_only=True)
class Attachment:
    """Binds the certificate's file: ``sha256`` is lowercase hex of the file's digest."""

    media_type: str
    sha256: str
    size: int


@dataclass(frozen=True, kw_only=True)
class CertificatePayload:
    """The parsed payload of a certificate envelope. ``valid_until`` None = no expiry.

    ``legacy_uscc`` says the holder's USCC was accepted only under ``accept_legacy_uscc``.
    """

    certificate_id: str
    type_code: str
    name: str
    kind: CertificateKind
    number: str
    holder: Holder
    holder_name: str
    legacy_uscc: bool = False
    issuer_code: str
    issuer_name: str
    issued_on: datetime.date
    valid_from: datetime.date
    valid_until: datetime.date | None
    version: int
    fields: Mapping[str, str] = field(default_factory=FrozenFields)
    attachment: Attachment | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.fields, FrozenFields):
            object.__setattr__(self, "fields", FrozenFields(self.fields))

    @functools.cached_property
    def lineage(self) -> str:
        """What every version of this certificate shares (see ``identifier.lineage_of``)."""
        # Cached: parsing a GB/T identifier costs tens of microseconds, and storing a push
        # asks for its lineage several times on the single commit thread.
        return lineage_of(self.certificate_id)


@dataclass(frozen=True, kw_only=True)
class RevocationPayload:
    """The parsed payload of a revocation envelope; ``revoked_at`` is timezone-aware."""

    certificate_id: str
    reason: str
    revoked_at: datetime.datetime


class _Problems:
    """Collects field violations, each with the reason code of its rule."""

    def __init__(self) -> None:
        self.items: list[tuple[FieldViolation, str]] = []

    def add(self, path: str, description: str, reason: str = _REASON_PAYLOAD) -> None:
        self.items.append((FieldViolation(path, description), reason))

    def absorb(self, exc: InvalidArgument) -> None:
        self.items.extend((v, exc.reason) for v in exc.violations)

    def raise_if_any(self, what: str) -> None:
        if not self.items:
            return
        reasons = {r for _, r in self.items}
        reason = reasons.pop() if len(reasons) == 1 else _REASON_PAYLOAD
        shown = tuple(v for v, _ in self.items[:MAX_REPORTED_VIOLATIONS])
        listed = "; ".join(f"{v.field}: {v.description}" for v in shown)
        total = len(self.items)
        if total == 1:
            message = listed
        elif total > len(shown):
            message = f"{total} problems in the {what} (first {len(shown)} listed): {listed}"
        else:
            message = f"{total} problems in the {what}: {listed}"
        raise InvalidArgument(message, reason=reason, violations=shown)


def parse_certificate_payload(payload: bytes, *, accept_legacy_uscc: bool) -> CertificatePayload:
    """Parse and validate a certificate payload, or raise one ``InvalidArgument`` listing
    every violation (field paths like ``payload.holder.id``, ``payload.fields["x"]``)."""
    top = _load_object(payload, _REASON_PAYLOAD)
    p = _Problems()
    _check_keys(top, _ROOT, allowed=_PAYLOAD_KEYS, required=_PAYLOAD_REQUIRED, problems=p)

    certificate_id = _string(top, "certificate_id", _ROOT, p)
    type_code = _string(top, "type_code", _ROOT, p)
    if type_code is not None:
        try:
            check_type_code(type_code, field=f"{_ROOT}.type_code")
        except InvalidArgument as exc:
            p.absorb(exc)
            type_code = None
    name = _text(top, "name", _ROOT, p, max_length=MAX_NAME_LENGTH)
    kind = _kind(top, p)
    number = _text(top, "number", _ROOT, p, max_length=MAX_NUMBER_LENGTH)
    checked_holder, holder_name = _holder(top, p, accept_legacy_uscc=accept_legacy_uscc)
    issuer_code, issuer_name = _issuer(top, p, accept_legacy_uscc=accept_legacy_uscc)
    issued_on = _date(top, "issued_on", p)
    valid_from = _date(top, "valid_from", p)
    valid_until = _nullable_date(top, "valid_until", p)
    version = _version(top, p)
    fields = _fields(top, p)
    attachment = _attachment(top, p)

    if valid_until is not None:
        if valid_from is not None and valid_from > valid_until:
            p.add(f"{_ROOT}.valid_until", f"{valid_until} is before valid_from {valid_from}")
        if issued_on is not None and issued_on > valid_until:
            p.add(f"{_ROOT}.valid_until", f"{valid_until} is before issued_on {issued_on}")
    if certificate_id is not None:
        for violation in certificate_id_violations(
            certificate_id,
            type_code=type_code,
            issuer=issuer_code,
            version=version,
            field=f"{_ROOT}.certificate_id",
        ):
            p.items.append((violation, "INVALID_CERTIFICATE_ID"))

    p.raise_if_any("payload")
    # No violations means every required value was read.
    return CertificatePayload(
        certificate_id=_read(certificate_id),
        type_code=_read(type_code),
        name=_read(name),
        kind=_read(kind),
        number=_read(number),
        holder=_read(checked_holder).holder,
        holder_name=_read(holder_name),
        legacy_uscc=_read(checked_holder).legacy_uscc,
        issuer_code=_read(issuer_code),
        issuer_name=_read(issuer_name),
        issued_on=_read(issued_on),
        valid_from=_read(valid_from),
        valid_until=valid_until,
        version=_read(version),
        fields=_read(fields),
        attachment=attachment,
    )


def certificate_payload_json(p: CertificatePayload) -> bytes:
    """The canonical encoding (``certhub.core.payload``): UTF-8 JSON, sorted keys, no whitespace,
    every key present."""
    attachment = (
        None
        if p.attachment is None
        else {
            "media_type": p.attachment.media_type,
            "sha256": p.attachment.sha256,
            "size": p.attachment.size,
        }
    )
    document = {
        "certificate_id": p.certificate_id,
        "type_code": p.type_code,
        "name": p.name,
        "kind": str(p.kind),
        "number": p.number,
        "holder": {"id_type": str(p.holder.id_type), "id": p.holder.id, "name": p.holder_name},
        "issuer": {"code": p.issuer_code, "name": p.issuer_name},
        "issued_on": p.issued_on.isoformat(),
        "valid_from": p.valid_from.isoformat(),
        "valid_until": None if p.valid_until is None else p.valid_until.isoformat(),
        "version": p.version,
        "fields": dict(p.fields),
        "attachment": attachment,
    }
    return canonical.canonical_json(document)


def parse_revocation_payload(payload: bytes) -> RevocationPayload:
    """Parse a revocation payload ``{certificate_id, reason, revoked_at}``.

    ``revoked_at`` is an RFC 3339 timestamp with ``Z`` or a UTC offset (fractions beyond
    microseconds are truncated). Whether the certificate exists and who may revoke it are
    the service's questions, not the schema's.
    """
    top = _load_object(payload, _REASON_REVOCATION)
    p = _Problems()
    _check_keys(top, _ROOT, allowed=_REVOCATION_KEYS, required=_REVOCATION_KEYS, problems=p)
    certificate_id = _string(top, "certificate_id", _ROOT, p)
    if certificate_id is not None:
        for violation in certificate_id_violations(
            certificate_id,
            type_code=None,
            issuer=None,
            version=None,
            field="payload.certificate_id",
        ):
            p.items.append((violation, "INVALID_CERTIFICATE_ID"))
    reason = _text(top, "reason", _ROOT, p, max_length=MAX_REVOCATION_REASON_LENGTH)
    revoked_at = _timestamp(top, "revoked_at", p)
    p.raise_if_any("revocation")
    return RevocationPayload(
        certificate_id=_read(certificate_id), reason=_read(reason), revoked_at=_read(revoked_at)
    )


def revocation_payload_json(r: RevocationPayload) -> bytes:
    """The canonical encoding (``certhub.core.payload``, the adapters' too); ``revoked_at`` is
    written in UTC with a ``Z``."""
    return canonical.revocation_payload_json(
        certificate_id=r.certificate_id, reason=r.reason, revoked_at=r.revoked_at
    )


# --- reading JSON ---------------------------------------------------------------------


def _read(value: _T | None) -> _T:
    """A value the caller knows was read, because no violation was reported for it."""
    if value is None:
        raise AssertionError("a validated value is missing")
    return value


class _DuplicateKeyError(ValueError):
    pass


def _load_object(payload: bytes, reason: str) -> dict[str, object]:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArgument.field(
            _ROOT, f"is not UTF-8 (byte {exc.start}: {exc.reason})", reason=reason
        ) from exc
    if _nested_deeper_than(text, MAX_JSON_DEPTH):
        raise InvalidArgument.field(
            _ROOT, f"JSON nested deeper than {MAX_JSON_DEPTH} levels", reason=reason
        )
    try:
        document = _decode_json(text)
    except _DuplicateKeyError as exc:
        raise InvalidArgument.field(_ROOT, str(exc), reason=reason) from exc
    except ValueError as exc:  # JSONDecodeError, and int() past the digit limit
        raise InvalidArgument.field(_ROOT, f"is not valid JSON ({exc})", reason=reason) from exc
    if not isinstance(document, dict):
        raise InvalidArgument.field(
            _ROOT, f"must be a JSON object, got {_json_type(document)}", reason=reason
        )
    return document


def _nested_deeper_than(text: str, limit: int) -> bool:
    # Every level opens with a bracket, so a text with at most ``limit`` of them, in strings
    # or not, nests no deeper: two counts in C (a payload without an attachment has four
    # objects) instead of the exact scan, which costs a few microseconds a payload.
    if text.count("{") + text.count("[") <= limit:
        return False
    return _nesting_depth(text) > limit


def _nesting_depth(text: str) -> int:
    # Counted without recursion, so hostile nesting costs one pass over the text. Strings
    # are cut out first (C loops; a Python step per token cost ~60 us a payload): without a
    # backslash no quote is escaped, so every other piece between quotes is outside them.
    outside = _JSON_STRING_RE.sub("", text) if "\\" in text else "".join(text.split('"')[::2])
    depth = deepest = 0
    for c in outside:
        if c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth -= 1
    return deepest


def _reject_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    # Two parsers that keep different duplicates would read two different certificates
    # from one signed payload. The dict is built in C; only a shorter dict (a key repeated)
    # walks the pairs in Python, to name the first key that comes again.
    document = dict(pairs)
    if len(document) == len(pairs):
        return document
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _DuplicateKeyError(f"duplicate key {_quote(key)}")
        seen.add(key)
    raise AssertionError("a shorter dict has a repeated key")


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


# Built once: json.loads with hooks builds a new decoder and scanner on every call, a few
# microseconds a push.
_DECODER = json.JSONDecoder(
    object_pairs_hook=_reject_duplicate_keys, parse_constant=_reject_constant
)
# A leading byte order mark: json.loads names it, a bare JSONDecoder says "Expecting value".
_BOM = "\ufeff"


def _decode_json(text: str) -> object:
    if text.startswith(_BOM):
        # Left to json.loads, to refuse it with its own message.
        return json.loads(
            text, object_pairs_hook=_reject_duplicate_keys, parse_constant=_reject_constant
        )
    return _DECODER.decode(text)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _quote(text: str) -> str:
    shown = text if len(text) <= _MAX_QUOTED else text[:_MAX_QUOTED] + "..."
    return json.dumps(shown, ensure_ascii=False)


def _child(path: str, key: str) -> str:
    if _PLAIN_KEY_RE.fullmatch(key):
        return f"{path}.{key}"
    return f"{path}[{_quote(key)}]"


def _check_keys(
    obj: dict[str, object],
    path: str,
    *,
    allowed: frozenset[str],
    required: frozenset[str],
    problems: _Problems,
) -> None:
    keys = obj.keys()
    if keys <= allowed and keys >= required:
        return  # the usual object: two set comparisons in C, no loop
    for key in obj:
        if key not in allowed:
            problems.add(
                _child(path, key), f"unknown field (allowed: {', '.join(sorted(allowed))})"
            )
    for key in sorted(required - obj.keys()):
        problems.add(f"{path}.{key}", "required field is missing")


def _string(obj: dict[str, object], key: str, path: str, problems: _Problems) -> str | None:
    """The string at ``key``; a missing key was reported by ``_check_keys``."""
    if key not in obj:
        return None
    value = obj[key]
    if not isinstance(value, str):
        problems.add(f"{path}.{key}", f"must be a string, got {_json_type(value)}")
        return None
    return value


def _text(
    obj: dict[str, object], key: str, path: str, problems: _Problems, *, max_length: int
) -> str | None:
    """A one-line human-readable string: non-empty, bounded, printable, not padded."""
    value = _string(obj, key, path, problems)
    if value is None:
        return None
    problem = _text_problem(value, max_length=max_length, allow_empty=False, multiline=False)
    if problem:
        problems.add(f"{path}.{key}", problem)
        return None
    return value


def _text_problem(value: str, *, max_length: int, allow_empty: bool, multiline: bool) -> str | None:
    if not value and not allow_empty:
        return "must not be empty"
    if len(value) > max_length:
        return f"at most {max_length} characters, got {len(value)}"
    visible = value.replace("\n", "") if multiline else value
    if not visible.isprintable():
        return "contains control or other non-printable characters"
    if value != value.strip():
        return "must not start or end with whitespace"
    return None


def _kind(obj: dict[str, object], problems: _Problems) -> CertificateKind | None:
    value = _string(obj, "kind", _ROOT, problems)
    if value is None:
        return None
    kind = _KINDS.get(value)
    if kind is None:
        allowed = ", ".join(CertificateKind)
        problems.add(f"{_ROOT}.kind", f"must be one of {allowed}, got {_quote(value)}")
    return kind


def _object(
    obj: dict[str, object], key: str, path: str, problems: _Problems
) -> dict[str, object] | None:
    if key not in obj:
        return None
    value = obj[key]
    if not isinstance(value, dict):
        problems.add(f"{path}.{key}", f"must be an object, got {_json_type(value)}")
        return None
    return value


def _holder(
    obj: dict[str, object], problems: _Problems, *, accept_legacy_uscc: bool
) -> tuple[CheckedHolder | None, str | None]:
    path = f"{_ROOT}.holder"
    holder = _object(obj, "holder", _ROOT, problems)
    if holder is None:
        return None, None
    _check_keys(holder, path, allowed=_HOLDER_KEYS, required=_HOLDER_KEYS, problems=problems)
    id_type = _string(holder, "id_type", path, problems)
    raw_id = _string(holder, "id", path, problems)
    name = _text(holder, "name", path, problems, max_length=MAX_NAME_LENGTH)
    checked = None
    if id_type is not None and raw_id is not None:
        try:
            checked = check_holder(
                id_type, raw_id, accept_legacy_uscc=accept_legacy_uscc, field=path
            )
        except InvalidArgument as exc:
            problems.absorb(exc)
    return checked, name


def _issuer(
    obj: dict[str, object], problems: _Problems, *, accept_legacy_uscc: bool
) -> tuple[str | None, str | None]:
    path = f"{_ROOT}.issuer"
    issuer = _object(obj, "issuer", _ROOT, problems)
    if issuer is None:
        return None, None
    _check_keys(issuer, path, allowed=_ISSUER_KEYS, required=_ISSUER_KEYS, problems=problems)
    raw_code = _string(issuer, "code", path, problems)
    name = _text(issuer, "name", path, problems, max_length=MAX_NAME_LENGTH)
    code = None
    if raw_code is not None:
        try:
            code = _issuer_code(raw_code, accept_legacy_uscc)
        except InvalidArgument as exc:
            problems.absorb(exc)
    return code, name


@functools.lru_cache(maxsize=_KNOWN_ISSUERS)
def _issuer_code(raw: str, accept_legacy_uscc: bool) -> str:
    # Cached: every certificate a department pushes names its code. A refused code is not
    # kept (lru_cache keeps no exception): it raises every time, naming the field.
    code, _ = check_uscc(raw, accept_legacy_uscc=accept_legacy_uscc, field=_ISSUER_CODE)
    return code


def _parse_date(value: str) -> datetime.date | str:
    if not _DATE_RE.fullmatch(value):
        return f"must be an ISO date YYYY-MM-DD, got {_quote(value)}"
    try:
        return datetime.date.fromisoformat(value)
    except ValueError:
        return f"{value} is not a real date"


def _date(obj: dict[str, object], key: str, problems: _Problems) -> datetime.date | None:
    value = _string(obj, key, _ROOT, problems)
    if value is None:
        return None
    parsed = _parse_date(value)
    if isinstance(parsed, str):
        problems.add(f"{_ROOT}.{key}", parsed)
        return None
    return parsed


def _nullable_date(obj: dict[str, object], key: str, problems: _Problems) -> datetime.date | None:
    if obj.get(key) is None:
        return None
    return _date(obj, key, problems)


def _integer(obj: dict[str, object], key: str, path: str, problems: _Problems) -> int | None:
    if key not in obj:
        return None
    value = obj[key]
    # bool is a subclass of int in Python, but true is not a number in JSON.
    if isinstance(value, bool) or not isinstance(value, int):
        problems.add(f"{path}.{key}", f"must be an integer, got {_json_type(value)}")
        return None
    return value


def _version(obj: dict[str, object], problems: _Problems) -> int | None:
    version = _integer(obj, "version", _ROOT, problems)
    if version is not None and not 1 <= version <= MAX_VERSION:
        problems.add(f"{_ROOT}.version", f"must be 1-{MAX_VERSION}, got {version}")
        return None
    return version


def _fields(obj: dict[str, object], problems: _Problems) -> FrozenFields | None:
    path = f"{_ROOT}.fields"
    raw = _object(obj, "fields", _ROOT, problems)
    if raw is None:
        return None
    if len(raw) > MAX_FIELDS:
        problems.add(path, f"at most {MAX_FIELDS} fields, got {len(raw)}")
        return None
    before = len(problems.items)
    for key, value in raw.items():
        key_problem = _text_problem(
            key, max_length=MAX_FIELD_NAME_LENGTH, allow_empty=False, multiline=False
        )
        if not isinstance(value, str):
            value_problem: str | None = f"must be a string, got {_json_type(value)}"
        else:
            # Face text may be blank (an empty 备注) or span lines (an address block).
            value_problem = _text_problem(
                value, max_length=MAX_FIELD_VALUE_LENGTH, allow_empty=True, multiline=True
            )
        if key_problem or value_problem:
            # Quoted only for a report: a face has up to MAX_FIELDS fields per push.
            where = f"{path}[{_quote(key)}]"
            if key_problem:
                problems.add(where, f"field name {key_problem}")
            if value_problem:
                problems.add(where, value_problem)
    if len(problems.items) > before:
        return None
    # No problem, so every value is a string (any other was reported above).
    return FrozenFields(cast("dict[str, str]", raw))


def _attachment(obj: dict[str, object], problems: _Problems) -> Attachment | None:
    if obj.get("attachment") is None:
        return None
    path = f"{_ROOT}.attachment"
    raw = _object(obj, "attachment", _ROOT, problems)
    if raw is None:
        return None
    before = len(problems.items)
    _check_keys(raw, path, allowed=_ATTACHMENT_KEYS, required=_ATTACHMENT_KEYS, problems=problems)
    media_type = _string(raw, "media_type", path, problems)
    if media_type is not None and media_type not in ATTACHMENT_MEDIA_TYPES:
        allowed = ", ".join(sorted(ATTACHMENT_MEDIA_TYPES))
        problems.add(f"{path}.media_type", f"must be one of {allowed}, got {_quote(media_type)}")
    digest = _string(raw, "sha256", path, problems)
    if digest is not None and not _SHA256_RE.fullmatch(digest):
        problems.add(f"{path}.sha256", "must be 64 lowercase hex characters (a SHA-256 digest)")
    size = _integer(raw, "size", path, problems)
    if size is not None and not 0 < size <= MAX_ATTACHMENT_BYTES:
        problems.add(f"{path}.size", f"must be 1-{MAX_ATTACHMENT_BYTES} bytes, got {size}")
    if len(problems.items) > before:
        return None
    return Attachment(media_type=_read(media_type), sha256=_read(digest), size=_read(size))


def _timestamp(obj: dict[str, object], key: str, problems: _Problems) -> datetime.datetime | None:
    value = _string(obj, key, _ROOT, problems)
    if value is None:
        return None
    if not _TIMESTAMP_RE.fullmatch(value):
        problems.add(
            f"{_ROOT}.{key}",
            "must be an RFC 3339 timestamp with a UTC offset, e.g. 2024-05-01T09:30:00+08:00, "
            f"got {_quote(value)}",
        )
        return None
    try:
        return datetime.datetime.fromisoformat(value)
    except ValueError:
        problems.add(f"{_ROOT}.{key}", f"{value} is not a real date and time")
        return None
