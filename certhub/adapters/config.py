"""The adapter's TOML config: where to read, how to map, whom to push to, with which key.

Every problem names the file and the key (``[mapping].issued_on``); relative paths are taken
from the config file's directory, so a config and its files move together. docs/adapters.md
has the full reference with an example.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

from certhub.adapters.errors import ConfigError
from certhub.core.payload import CertificateKind, IdType

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_POLL_SECONDS",
    "DEFAULT_STREAMS",
    "MAX_STREAMS",
    "AdapterConfig",
    "AttachmentSpec",
    "DepartmentConfig",
    "FilesSourceConfig",
    "HubEndpoint",
    "MappingConfig",
    "OutboxConfig",
    "SqlSourceConfig",
    "TypeConfig",
    "ValueSpec",
    "load_config",
]

#: Rows signed and committed to the outbox per SQLite transaction: large enough that the
#: fsync per commit is amortised (~1 ms over ~50 ms of signing), small enough that a stop
#: request waits for at most one batch.
DEFAULT_BATCH_SIZE = 500
#: Pushes awaiting their result on the stream. The hub keeps up to 128 per stream in flight
#: (certhub/hub/grpc/servicers.py STREAM_IN_FLIGHT); 256 keeps its pipeline full while it answers.
DEFAULT_MAX_IN_FLIGHT = 256
#: How often `run` polls the source for new or changed records. Licences are issued during
#: office hours and an intake window needs them the same day; a minute is timely and cheap.
DEFAULT_POLL_SECONDS = 60.0
#: Upper bound of max_in_flight: every in-flight item holds its envelope in memory.
MAX_IN_FLIGHT_LIMIT = 4096
#: Concurrent push streams, each on its own connection. The hub runs one worker process per
#: core behind one port (SO_REUSEPORT spreads connections, not calls, over them), and the
#: documented deployment is `--workers 2`: two streams keep both busy during a backfill.
DEFAULT_STREAMS = 2
#: Upper bound of streams: each holds a connection and up to max_in_flight envelopes; more
#: streams than a deployment's hub processes only add connections.
MAX_STREAMS = 32

# The payload's vocabularies, the hub's (certhub.core.payload).
_ID_TYPES = tuple(IdType)
_KINDS = tuple(CertificateKind)
_ENCODINGS = {"utf-8": "utf-8-sig", "utf8": "utf-8-sig", "gbk": "gb18030", "gb18030": "gb18030"}
_DEFAULT_DATE_FORMATS = ("%Y-%m-%d",)


@dataclass(frozen=True, kw_only=True)
class HubEndpoint:
    address: str
    ca: Path
    cert: Path
    key: Path
    server_name: str | None = None


@dataclass(frozen=True, kw_only=True)
class DepartmentConfig:
    code: str
    name: str
    signing_key: Path
    key_password_env: str | None = None
    #: Key rotation: the next key signs what is dated from its ``not_before`` on (a
    #: certificate by its issue date, a revocation by its day), once that day has come.
    next_signing_key: Path | None = None
    next_key_not_before: dt.date | None = None
    next_key_password_env: str | None = None


@dataclass(frozen=True, kw_only=True)
class OutboxConfig:
    path: Path
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    poll_seconds: float = DEFAULT_POLL_SECONDS
    streams: int = DEFAULT_STREAMS


@dataclass(frozen=True, kw_only=True)
class SqlSourceConfig:
    url: str
    table: str | None
    query: str | None
    key: tuple[str, ...]
    watermark: str
    marker: tuple[str, ...]
    batch_size: int = DEFAULT_BATCH_SIZE
    kind: Literal["sql"] = "sql"


@dataclass(frozen=True, kw_only=True)
class FilesSourceConfig:
    path: Path
    patterns: tuple[str, ...]
    encoding: str
    key: tuple[str, ...]
    marker: tuple[str, ...]
    delimiter: str = ","
    batch_size: int = DEFAULT_BATCH_SIZE
    kind: Literal["files"] = "files"


@dataclass(frozen=True, kw_only=True)
class TypeConfig:
    code: str
    name: str
    kind: str
    values: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class ValueSpec:
    """Where one payload value comes from: a column, or a constant ``value``.

    ``formats`` parse dates (strptime); ``values`` translates source codes (e.g. 身份证 ->
    RESIDENT_ID); ``optional`` lets an empty cell mean "none" (no expiry date).
    """

    where: str
    column: str | None = None
    value: str | None = None
    formats: tuple[str, ...] = _DEFAULT_DATE_FORMATS
    optional: bool = False
    values: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class AttachmentSpec:
    column: str
    base: Path
    media_type: str | None


@dataclass(frozen=True, kw_only=True)
class MappingConfig:
    type: ValueSpec
    number: ValueSpec
    holder_id_type: ValueSpec
    holder_id: ValueSpec
    holder_name: ValueSpec
    issued_on: ValueSpec
    valid_from: ValueSpec
    valid_until: ValueSpec | None
    serial: ValueSpec | None
    certificate_id_template: str | None
    fields: Mapping[str, ValueSpec]
    status: ValueSpec | None
    revoked_values: frozenset[str]
    revocation_reason: ValueSpec | None
    attachment: AttachmentSpec | None


@dataclass(frozen=True, kw_only=True)
class AdapterConfig:
    path: Path
    department: DepartmentConfig
    hub: HubEndpoint
    outbox: OutboxConfig
    source: SqlSourceConfig | FilesSourceConfig
    types: tuple[TypeConfig, ...]
    mapping: MappingConfig


class _Skip(ConfigError):
    """A problem already recorded: abandon the value being read (the rest goes on)."""


Location = tuple[str | int, ...]
# A table header ([a.b] or [[a.b]]) and a key line (a.b = ...), outside multi-line strings.
_HEADER = re.compile(r"^\s*(\[\[?)\s*(.+?)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(
    r"""^\s*((?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+)(?:\s*\.\s*(?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+))*)\s*="""
)
_NAME_PART = re.compile(r"""\s*("[^"]*"|'[^']*'|[A-Za-z0-9_-]+)\s*(?:\.|$)""")


def _name(dotted: str) -> tuple[str, ...]:
    return tuple(part.strip("\"'") for part in _NAME_PART.findall(dotted))


def _key_lines(text: str) -> dict[Location, int]:
    """The line of every table header and key: ``("types", 1, "code")`` -> 23."""
    lines: dict[Location, int] = {}
    arrays: dict[tuple[str, ...], int] = {}
    table: Location = ()
    in_string = False
    for number, line in enumerate(text.splitlines(), start=1):
        quotes = line.count('"""') + line.count("'''")
        if in_string:
            in_string = quotes % 2 == 0
            continue
        header = _HEADER.match(line)
        if header is not None and "=" not in line.split("]")[0]:
            name = _name(header.group(2))
            if header.group(1) == "[[":
                arrays[name] = arrays.get(name, -1) + 1
                table = (*name, arrays[name])
            else:
                table = name
            lines.setdefault(table, number)
            continue
        key = _KEY.match(line)
        if key is not None:
            lines.setdefault((*table, *_name(key.group(1))), number)
        in_string = quotes % 2 == 1
    return lines


class _Problems:
    """Every problem of one config file, each with its line where the file has one."""

    def __init__(self, file: Path, text: str) -> None:
        self.file = file
        self._lines = _key_lines(text)
        self.found: list[tuple[int | None, str]] = []

    def add(self, location: Location, message: str) -> None:
        line = None
        for end in range(len(location), 0, -1):
            line = self._lines.get(location[:end])
            if line is not None:
                break
        self.found.append((line, message))

    def error(self) -> ConfigError:
        ordered = sorted(self.found, key=lambda p: (p[0] is None, p[0] or 0))
        return ConfigError(
            "\n".join(
                f"{self.file}:{line}: {message}" if line else f"{self.file}: {message}"
                for line, message in ordered
            )
        )


class _Table:
    """Typed reads from one TOML table. A problem is recorded with its key (and line) and a
    placeholder returned, so one reading of the file reports every problem in it."""

    def __init__(
        self, data: Mapping[str, object], where: str, problems: _Problems, location: Location
    ) -> None:
        self.data = data
        self.where = where
        self.file = problems.file
        self.problems = problems
        self.location = location
        self.used: set[str] = set()

    def error(self, key: str, problem: str) -> _Skip:
        """Record ``problem`` of ``key``; returns the exception that abandons the value."""
        name = f"{self.where}.{key}" if self.where else f"[{key}]"
        self.problems.add((*self.location, key), f"{name}: {problem}")
        return _Skip(problem)

    def get(self, key: str) -> object:
        self.used.add(key)
        return self.data.get(key)

    def string(self, key: str, *, default: str | None = None, required: bool = True) -> str:
        value = self.get(key)
        if value is None:
            if default is not None:
                return default
            if required:
                self.error(key, "is required")
            return ""
        if not isinstance(value, str) or not value.strip():
            self.error(key, f"must be a non-empty string, got {value!r}")
            return ""
        return value

    def optional_string(self, key: str) -> str | None:
        value = self.string(key, required=False)
        return value or None

    def number(self, key: str, default: float, *, low: float, high: float) -> float:
        value = self.get(key)
        if value is None:
            return default
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            self.error(key, f"must be a number from {low:g} to {high:g}, got {value!r}")
            return default
        return float(value)

    def integer(self, key: str, default: int, *, low: int, high: int) -> int:
        value = self.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.error(key, f"must be a whole number from {low} to {high}, got {value!r}")
            return default
        return value

    def strings(self, key: str, *, required: bool = False) -> tuple[str, ...]:
        value = self.get(key)
        if value is None:
            if required:
                self.error(key, "is required")
            return ()
        if isinstance(value, str):
            return (value,)
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.error(key, f"must be a string or a list of strings, got {value!r}")
            return ()
        if required and not value:
            self.error(key, "must name at least one column")
        return tuple(value)

    def path(self, key: str, *, default: Path | None = None) -> Path:
        text = self.string(key, required=default is None) or None
        resolved = default if text is None else Path(text).expanduser()
        if resolved is None:  # missing, and recorded
            return self.file.parent
        return resolved if resolved.is_absolute() else self.file.parent / resolved

    def table(self, key: str, *, required: bool = True) -> _Table | None:
        value = self.get(key)
        if value is None:
            if required:
                self.error(key, "table is missing")
            return None
        if not isinstance(value, dict):
            self.error(key, "must be a table")
            return None
        where = f"{self.where}.{key}" if self.where else f"[{key}]"
        return _Table(value, where, self.problems, (*self.location, key))

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            self.problems.add(
                (*self.location, unknown[0]),
                f"{self.where or 'top level'}: unknown key(s) {', '.join(unknown)} "
                "(see docs/adapters.md)",
            )


_T = TypeVar("_T")


def _section(read: Callable[[], _T]) -> _T | None:
    """``read()``, or None when it stopped at a recorded problem."""
    try:
        return read()
    except _Skip:
        return None


def load_config(path: Path) -> AdapterConfig:
    """Read and check the config file; raise ``ConfigError`` listing every problem, each
    with its line."""
    path = path.resolve()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 (byte {exc.start})") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    problems = _Problems(path, text)
    top = _Table(data, "", problems, ())
    t = top.table("department")
    department = None if t is None else _section(lambda: _department(t))
    h = top.table("hub")
    hub = None if h is None else _section(lambda: _hub(h))
    o = top.table("outbox", required=False)
    outbox = _section(lambda: _outbox(o, path))
    s = top.table("source")
    source = None if s is None else _section(lambda: _source(s))
    types = _types(top)
    m = top.table("mapping")
    mapping = None if m is None or not types else _section(lambda: _mapping(m, types))
    top.finish()
    if problems.found:
        raise problems.error()
    # Each is None only after a recorded problem.
    assert department is not None
    assert hub is not None
    assert outbox is not None
    assert source is not None
    assert mapping is not None
    return AdapterConfig(
        path=path,
        department=department,
        hub=hub,
        outbox=outbox,
        source=source,
        types=types,
        mapping=mapping,
    )


def _department(t: _Table) -> DepartmentConfig:
    next_key = t.path("next_signing_key") if t.get("next_signing_key") is not None else None
    not_before = t.get("next_key_not_before")
    if not_before is not None and (
        not isinstance(not_before, dt.date) or isinstance(not_before, dt.datetime)
    ):
        t.error("next_key_not_before", f"must be a date (2027-01-01), got {not_before!r}")
        not_before = None
    elif (next_key is None) != (not_before is None):
        t.error(
            "next_key_not_before" if next_key is not None else "next_signing_key",
            "next_signing_key and next_key_not_before go together",
        )
    config = DepartmentConfig(
        code=t.string("code"),
        name=t.string("name"),
        signing_key=t.path("signing_key"),
        key_password_env=t.optional_string("key_password_env"),
        next_signing_key=next_key,
        next_key_not_before=not_before,
        next_key_password_env=t.optional_string("next_key_password_env"),
    )
    t.finish()
    return config


def _hub(t: _Table) -> HubEndpoint:
    config = HubEndpoint(
        address=t.string("address"),
        ca=t.path("ca"),
        cert=t.path("cert"),
        key=t.path("key"),
        server_name=t.optional_string("server_name"),
    )
    t.finish()
    return config


def _outbox(t: _Table | None, file: Path) -> OutboxConfig:
    default = file.parent / f"{file.stem}.outbox.db"
    if t is None:
        return OutboxConfig(path=default)
    config = OutboxConfig(
        path=t.path("path", default=default),
        max_in_flight=t.integer(
            "max_in_flight", DEFAULT_MAX_IN_FLIGHT, low=1, high=MAX_IN_FLIGHT_LIMIT
        ),
        poll_seconds=t.number("poll_seconds", DEFAULT_POLL_SECONDS, low=0.01, high=86400),
        streams=t.integer("streams", DEFAULT_STREAMS, low=1, high=MAX_STREAMS),
    )
    t.finish()
    return config


def _source(t: _Table) -> SqlSourceConfig | FilesSourceConfig:
    kind = t.string("kind")
    if not kind:
        raise _Skip("kind")  # recorded: without it the other keys cannot be checked
    batch = t.integer("batch_size", DEFAULT_BATCH_SIZE, low=1, high=100_000)
    source: SqlSourceConfig | FilesSourceConfig
    if kind == "sql":
        table, query = t.optional_string("table"), t.optional_string("query")
        if (table is None) == (query is None):
            t.error("table", "give exactly one of table or query")
        watermark = t.string("watermark")
        source = SqlSourceConfig(
            url=t.string("url"),
            table=table,
            query=query,
            key=t.strings("key", required=True),
            watermark=watermark,
            marker=t.strings("marker") or (watermark,),
            batch_size=batch,
        )
    elif kind == "files":
        encoding = t.string("encoding", default="utf-8").lower()
        if encoding not in _ENCODINGS:
            t.error("encoding", f"must be one of {', '.join(_ENCODINGS)}, got {encoding!r}")
            encoding = "utf-8"
        delimiter = t.string("delimiter", default=",")
        if len(delimiter) != 1:
            t.error("delimiter", f"must be one character, got {delimiter!r}")
        source = FilesSourceConfig(
            path=t.path("path"),
            patterns=t.strings("patterns") or ("*.csv", "*.jsonl"),
            encoding=_ENCODINGS[encoding],
            key=t.strings("key", required=True),
            marker=t.strings("marker"),
            delimiter=delimiter,
            batch_size=batch,
        )
    else:
        raise t.error("kind", f"must be 'sql' or 'files', got {kind!r}")
    t.finish()
    return source


def _types(top: _Table) -> tuple[TypeConfig, ...]:
    raw = top.get("types")
    if not isinstance(raw, list) or not raw:
        top.error("types", "at least one [[types]] table is required")
        return ()
    types = []
    for n, entry in enumerate(raw):
        if not isinstance(entry, dict):
            top.error(f"types[{n}]", "must be a table")
            continue
        t = _Table(entry, f"[[types]][{n}]", top.problems, ("types", n))
        kind = t.string("kind")
        if kind and kind not in _KINDS:
            t.error("kind", f"must be one of {', '.join(_KINDS)}, got {kind!r}")
        code = t.string("code")
        types.append(
            TypeConfig(code=code, name=t.string("name"), kind=kind, values=t.strings("values"))
        )
        t.finish()
    return tuple(types)


def _spec(t: _Table, key: str, *, required: bool = True) -> ValueSpec | None:
    """The value spec of ``key``; a problem is recorded and a placeholder returned."""
    try:
        return _read_spec(t, key, required=required)
    except _Skip:
        return ValueSpec(where=f"{t.where}.{key}", value="") if required else None


def _read_spec(t: _Table, key: str, *, required: bool) -> ValueSpec | None:
    value = t.get(key)
    where = f"{t.where}.{key}"
    if value is None:
        if required:
            raise t.error(key, "is required (a column name, or { value = ... })")
        return None
    if isinstance(value, str) and value:
        return ValueSpec(where=where, column=value)
    if not isinstance(value, dict):
        raise t.error(key, f"must be a column name or an inline table, got {value!r}")
    s = _Table(value, where, t.problems, (*t.location, key))
    column, constant = s.optional_string("column"), s.optional_string("value")
    if (column is None) == (constant is None):
        raise s.error("column", "give exactly one of column or value")
    translations = s.get("values") or {}
    if not isinstance(translations, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in translations.items()
    ):
        raise s.error("values", "must be a table of source value = payload value")
    optional = s.get("optional") or False
    if not isinstance(optional, bool):
        raise s.error("optional", "must be true or false")
    spec = ValueSpec(
        where=where,
        column=column,
        value=constant,
        formats=s.strings("formats") or _DEFAULT_DATE_FORMATS,
        optional=optional,
        values=dict(translations),
    )
    s.finish()
    return spec


def _mapping(t: _Table, types: tuple[TypeConfig, ...]) -> MappingConfig:
    fields_table = t.table("fields", required=False)
    fields: dict[str, ValueSpec] = {}
    if fields_table is not None:
        for label in list(fields_table.data):
            spec = _spec(fields_table, label)
            assert spec is not None
            fields[label] = spec
        fields_table.finish()
    attachment = None
    raw_attachment = t.table("attachment", required=False)
    if raw_attachment is not None:
        attachment = AttachmentSpec(
            column=raw_attachment.string("column"),
            base=raw_attachment.path("base", default=Path(".")),
            media_type=raw_attachment.optional_string("media_type"),
        )
        raw_attachment.finish()
    holder_id_type = _spec(t, "holder_id_type")
    assert holder_id_type is not None
    if holder_id_type.value and holder_id_type.value not in _ID_TYPES:
        t.error("holder_id_type", f"value must be one of {', '.join(_ID_TYPES)}")
    type_spec = _spec(t, "type", required=len(types) > 1)
    if type_spec is None:
        type_spec = ValueSpec(where=f"{t.where}.type", value=types[0].code)
    issued_on = _spec(t, "issued_on")
    assert issued_on is not None
    status = _spec(t, "status", required=False)
    revoked = frozenset(t.strings("revoked_values"))
    if status is not None and not revoked:
        t.error("revoked_values", "is required with status (e.g. ['注销', '吊销'])")
    mapping = MappingConfig(
        type=type_spec,
        number=_required(_spec(t, "number")),
        holder_id_type=holder_id_type,
        holder_id=_required(_spec(t, "holder_id")),
        holder_name=_required(_spec(t, "holder_name")),
        issued_on=issued_on,
        valid_from=_spec(t, "valid_from", required=False) or issued_on,
        valid_until=_spec(t, "valid_until", required=False),
        serial=_spec(t, "serial", required=False),
        certificate_id_template=t.optional_string("certificate_id_template"),
        fields=fields,
        status=status,
        revoked_values=revoked,
        revocation_reason=_spec(t, "revocation_reason", required=False),
        attachment=attachment,
    )
    t.finish()
    return mapping


def _required(spec: ValueSpec | None) -> ValueSpec:
    assert spec is not None
    return spec
