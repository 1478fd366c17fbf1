"""``registry.toml`` validated into a ``Registry``, or every problem with its line.

The operator keeps ``registry.toml`` under version control and applies it with
``certhub registry apply FILE``. ``parse_registry`` validates the whole file and either
returns a ``Registry`` or raises one ``RegistryError`` that lists every problem, each with
the line it is on, so an invalid file changes nothing and the operator can fix it in one
pass. The hub stores the applied text and every hub process parses it with this module, so
parsing is deterministic and touches nothing but its argument.

``docs/registry.example.toml`` is the documented, complete example of the format.
"""

from __future__ import annotations

import datetime
import math
import re
import tomllib
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from certhub.hub.domain.certificate import CertificateKind
from certhub.hub.domain.holder import IdType, check_holder
from certhub.hub.errors import InvalidArgument
from certhub.hub.registry.locator import Locator, join_path
from certhub.hub.registry.model import (
    CertificateType,
    Department,
    Material,
    Principal,
    RateLimitSpec,
    Registry,
    Role,
    ServiceItem,
    Settings,
    registry_digest,
)
from certhub.signing.errors import MalformedKey
from certhub.signing.keys import KeyStatus, PublicKey, TrustedKey

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from pathlib import Path

__all__ = [
    "MAX_REGISTRY_BYTES",
    "PRINCIPAL_NAME_MAX_LENGTH",
    "RegistryError",
    "RegistryProblem",
    "load_registry_file",
    "parse_registry",
    "principal_name_problem",
]

#: The reference district (571 types, 3,458 service items, a few hundred principals) is
#: about 1.5 MB of TOML; a province is an order of magnitude more. 32 MiB bounds what a
#: typo'd path (a log file, a database dump) can make every hub process parse and keep.
MAX_REGISTRY_BYTES = 32 * 1024 * 1024
#: A principal name is the CN of its client certificate, and X.509 bounds a CN at 64
#: characters (RFC 5280, ub-common-name); it is also the client certificate's file name.
PRINCIPAL_NAME_MAX_LENGTH = 64
#: Department, type, item and material names are printed on screens and in audit views;
#: the longest real Chinese names (service items with their situation, 情形) stay well under
#: 200 characters, so anything longer is a pasted paragraph, not a name.
_NAME_MAX_LENGTH = 200
#: Service item codes (事项编码) of the provincial and national catalogues are at most about
#: 40 characters; material codes are shorter. 64 leaves room without admitting free text.
_CODE_MAX_LENGTH = 64
#: A C2SP checkpoint origin is one line naming the log, conventionally a schema-less URL;
#: 255 is the longest DNS name and more than any URL path a log needs.
_LOG_ORIGIN_MAX_LENGTH = 255
#: GB/T 36904 type codes: the defining department's 18-character USCC and a 3-digit serial.
_TYPE_CODE_LENGTH = 21
_USCC_LENGTH = 18

_PRINCIPAL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_CODE = re.compile(r"[\x21-\x7e]+")  # printable ASCII without spaces
_KEY_ID = re.compile(r"[0-9a-f]{64}")
_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")

_T = TypeVar("_T")
_E = TypeVar("_E", bound=StrEnum)


@dataclass(frozen=True)
class RegistryProblem:
    """One thing wrong with a registry file. ``path`` is like ``departments[0].keys[1].status``."""

    line: int | None
    path: str
    message: str

    def format(self, source: str = "registry.toml") -> str:
        where = f"{source}:{self.line}" if self.line is not None else source
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class RegistryError(Exception):
    """The registry file is invalid; ``errors`` lists every problem found, in line order."""

    def __init__(self, errors: Iterable[RegistryProblem], *, source: str = "registry.toml") -> None:
        self.errors = tuple(errors)
        self.source = source
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(problem.format(self.source) for problem in self.errors)


def principal_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a principal name (CN and file name), or None if it can."""
    if not name:
        return "must not be empty"
    if len(name) > PRINCIPAL_NAME_MAX_LENGTH:
        return f"at most {PRINCIPAL_NAME_MAX_LENGTH} characters, got {len(name)}"
    if not _PRINCIPAL_NAME.fullmatch(name):
        return (
            f"{name!r} is not a valid principal name: use ASCII letters, digits, '.', '_' and "
            "'-', starting with a letter or digit"
        )
    return None


def load_registry_file(path: Path) -> tuple[str, Registry]:
    """Read a registry file (UTF-8, with or without a BOM) and parse it.

    Returns the text exactly as it will be stored (without the BOM) and its model.
    Raises ``RegistryError`` for an invalid file and ``OSError`` if it cannot be read.
    """
    # The path as the caller gave it, like the CLI's "PATH is invalid" header above the lines.
    source = str(path)
    data = path.read_bytes()
    if len(data) > MAX_REGISTRY_BYTES:
        raise RegistryError(
            [
                RegistryProblem(
                    None,
                    "",
                    f"file is {len(data)} bytes, more than the limit of {MAX_REGISTRY_BYTES}",
                )
            ],
            source=source,
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise RegistryError(
            [RegistryProblem(line, "", f"not valid UTF-8 (byte offset {exc.start})")],
            source=source,
        ) from exc
    return text, parse_registry(text, source=source)


def parse_registry(text: str, *, source: str = "registry.toml") -> Registry:
    """Validate the whole registry text; raise ``RegistryError`` listing every problem."""
    if len(text) > MAX_REGISTRY_BYTES:
        raise RegistryError(
            [RegistryProblem(None, "", f"text is longer than the limit of {MAX_REGISTRY_BYTES}")],
            source=source,
        )
    body = text.removeprefix("\ufeff")
    try:
        document = tomllib.loads(body)
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError([_syntax_problem(exc)], source=source) from exc
    checker = _Checker(body)
    registry = checker.registry(document, digest=registry_digest(text))
    if checker.problems or registry is None:
        raise RegistryError(checker.located_problems(), source=source)
    return registry


def _syntax_problem(exc: tomllib.TOMLDecodeError) -> RegistryProblem:
    message = str(exc)
    position = _TOML_POSITION.search(message)
    if position is None:
        return RegistryProblem(None, "", f"TOML syntax: {message}")
    text = message[: position.start()]
    return RegistryProblem(
        int(position.group(1)), "", f"TOML syntax: {text} (column {position.group(2)})"
    )


# Most specific first: bool is an int and datetime is a date in Python, not in TOML.
_TOML_TYPE_NAMES: tuple[tuple[type, str], ...] = (
    (bool, "a boolean"),
    (int, "an integer"),
    (float, "a float"),
    (str, "a string"),
    (datetime.datetime, "a date-time"),
    (datetime.date, "a date"),
    (datetime.time, "a time"),
    (list, "an array"),
    (dict, "a table"),
)


def _describe(value: object) -> str:
    """The TOML name of a parsed value's type, for messages."""
    for kind, name in _TOML_TYPE_NAMES:
        if isinstance(value, kind):
            return name
    return type(value).__name__


_MISSING: Any = object()


class _Checker:
    """Walks the parsed document, collecting problems by path; builds the model if none."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._problems: list[tuple[str, str]] = []
        self._locator: Locator | None = None
        # Codes declared in the file, valid or not: one typo in a code is reported once,
        # where it is declared, and not again at every reference to it.
        self._declared_departments: set[str] = set()
        self._declared_types: set[str] = set()
        self._declared_items: set[str] = set()

    @property
    def problems(self) -> list[tuple[str, str]]:
        return self._problems

    def located_problems(self) -> list[RegistryProblem]:
        located = [
            RegistryProblem(self.line(path), path, message) for path, message in self._problems
        ]
        # Stable: problems on one line keep the order in which they were found.
        located.sort(key=lambda p: p.line if p.line is not None else 0)
        return located

    def line(self, path: str) -> int | None:
        if self._locator is None:
            self._locator = Locator(self._text)
        return self._locator.line(path)

    def problem(self, path: str, message: str) -> None:
        self._problems.append((path, message))

    # -- generic shapes ---------------------------------------------------------------------

    def table(
        self, value: object, path: str, *, required: Iterable[str], optional: Iterable[str] = ()
    ) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.problem(path, f"must be a table, got {_describe(value)}")
            return None
        required = tuple(required)
        allowed = (*required, *optional)
        for key in value:
            if key not in allowed:
                self.problem(
                    join_path(path, key),
                    f"unknown key {key!r}; allowed here: {', '.join(allowed)}",
                )
        for key in required:
            if key not in value:
                self.problem(path, f"missing required key {key!r}")
        return value

    def array_of_tables(self, document: Mapping[str, Any], key: str) -> list[tuple[str, Any]]:
        value = document.get(key, [])
        if not isinstance(value, list):
            self.problem(key, f"must be an array of tables ([[{key}]]), got {_describe(value)}")
            return []
        return [(f"{key}[{i}]", item) for i, item in enumerate(value)]

    def typed(
        self, table: Mapping[str, Any], key: str, path: str, kind: type[_T], what: str
    ) -> _T | None:
        value = table.get(key, _MISSING)
        if value is _MISSING:
            return None  # reported by table() when required
        # bool is an int and datetime is a date in Python, but not in TOML.
        ok = isinstance(value, kind) and not (
            (kind in (int, float) and isinstance(value, bool))
            or (kind is datetime.date and isinstance(value, datetime.datetime))
        )
        if not ok:
            self.problem(join_path(path, key), f"must be {what}, got {_describe(value)}")
            return None
        checked: _T = value
        return checked

    def text(
        self,
        table: Mapping[str, Any],
        key: str,
        path: str,
        *,
        max_length: int = _NAME_MAX_LENGTH,
        pattern: re.Pattern[str] | None = None,
        pattern_help: str = "",
    ) -> str | None:
        value = self.typed(table, key, path, str, "a string")
        if value is None:
            return None
        where = join_path(path, key)
        if not value:
            self.problem(where, "must not be empty")
        elif len(value) > max_length:
            self.problem(where, f"at most {max_length} characters, got {len(value)}")
        elif value != value.strip():
            self.problem(where, "must not start or end with whitespace")
        elif not value.isprintable():
            self.problem(where, "contains control or other non-printable characters")
        elif pattern is not None and not pattern.fullmatch(value):
            self.problem(where, f"{value!r} {pattern_help}")
        else:
            return value
        return None

    def code(self, table: Mapping[str, Any], key: str, path: str) -> str | None:
        return self.text(
            table,
            key,
            path,
            max_length=_CODE_MAX_LENGTH,
            pattern=_CODE,
            pattern_help="must be printable ASCII without spaces",
        )

    def string_list(
        self, table: Mapping[str, Any], key: str, path: str, *, allow_empty: bool = True
    ) -> list[tuple[str, str]] | None:
        """(element path, value) for a list of unique non-empty strings."""
        values = self.typed(table, key, path, list, "an array of strings")
        if values is None:
            return None
        where = join_path(path, key)
        if not values and not allow_empty:
            self.problem(where, "must not be empty")
            return None
        result: list[tuple[str, str]] = []
        seen: set[str] = set()
        for i, value in enumerate(values):
            element = f"{where}[{i}]"
            if not isinstance(value, str) or not value:
                self.problem(element, f"must be a non-empty string, got {_describe(value)}")
            elif value in seen:
                self.problem(element, f"{value!r} is listed twice")
            else:
                seen.add(value)
                result.append((element, value))
        return result

    def uscc(self, code: str, path: str, *, accept_legacy: bool) -> bool | None:
        """Whether ``code`` is a legacy USCC, or None (and a problem) if it is not a USCC."""
        try:
            checked = check_holder(IdType.USCC, code, accept_legacy_uscc=accept_legacy, field=path)
        except InvalidArgument as exc:
            description = exc.violations[0].description if exc.violations else exc.message
            self.problem(path, f"{code!r} is not a valid USCC: {description}")
            return None
        if checked.holder.id != code:
            self.problem(path, f"write the USCC in capitals: {checked.holder.id!r}")
            return None
        return checked.legacy_uscc

    # -- the registry --------------------------------------------------------------------

    def registry(self, document: dict[str, Any], *, digest: str) -> Registry | None:
        self.table(
            document,
            "",
            required=(),
            optional=(
                "settings",
                "departments",
                "certificate_types",
                "service_items",
                "principals",
            ),
        )
        settings = self.settings(document.get("settings", {}))
        departments = self.departments(document, settings)
        types = self.certificate_types(document, settings, departments)
        items = self.service_items(document, types)
        principals = self.principals(document, departments, items)
        if self._problems or settings is None:
            return None

        issued: dict[str, set[str]] = {code: set() for code in departments}
        for certificate_type in types.values():
            for issuer in certificate_type.issuer_codes:
                issued[issuer].add(certificate_type.code)
        final_departments = {
            code: Department(
                code=code,
                name=department.name,
                keys=department.keys,
                type_codes=frozenset(issued[code]),
                legacy_uscc=department.legacy_uscc,
            )
            for code, department in departments.items()
        }
        keys = {
            key.public_key.key_id: key
            for department in final_departments.values()
            for key in department.keys
        }
        return Registry(
            settings=settings,
            departments=MappingProxyType(final_departments),
            types=MappingProxyType(types),
            service_items=MappingProxyType(items),
            principals=MappingProxyType(principals),
            keys=MappingProxyType(keys),
            digest=digest,
        )

    def settings(self, value: object) -> Settings | None:
        table = self.table(
            value, "settings", required=(), optional=("accept_legacy_uscc", "log_origin")
        )
        if table is None:
            return None
        legacy = self.typed(table, "accept_legacy_uscc", "settings", bool, "true or false")
        origin = None
        if "log_origin" in table:
            origin = self.text(
                table,
                "log_origin",
                "settings",
                max_length=_LOG_ORIGIN_MAX_LENGTH,
                pattern=_CODE,
                pattern_help="must be one line of printable ASCII without spaces "
                "(e.g. certhub.example.gov.cn/gulou)",
            )
        return Settings(accept_legacy_uscc=bool(legacy), log_origin=origin)

    def departments(
        self, document: Mapping[str, Any], settings: Settings | None
    ) -> dict[str, Department]:
        accept_legacy = settings.accept_legacy_uscc if settings is not None else False
        departments: dict[str, Department] = {}
        first_code: dict[str, str] = {}
        first_name: dict[str, str] = {}
        key_owner: dict[str, str] = {}
        for path, value in self.array_of_tables(document, "departments"):
            table = self.table(value, path, required=("code", "name"), optional=("keys",))
            if table is None:
                continue
            code = self.text(table, "code", path, max_length=_CODE_MAX_LENGTH)
            name = self.text(table, "name", path)
            legacy = None
            if code is not None:
                if self._first(first_code, code, f"{path}.code", "department code"):
                    legacy = self.uscc(code, f"{path}.code", accept_legacy=accept_legacy)
                else:
                    code = None
            if name is not None and not self._first(
                first_name, name, f"{path}.name", "department name"
            ):
                name = None
            keys = self.keys(table, path, owner=code or "", key_owner=key_owner)
            if code is not None and name is not None and legacy is not None and keys is not None:
                departments[code] = Department(
                    code=code, name=name, keys=keys, type_codes=frozenset(), legacy_uscc=legacy
                )
        self._declared_departments = set(first_code)
        return departments

    def keys(
        self, department: Mapping[str, Any], path: str, *, owner: str, key_owner: dict[str, str]
    ) -> tuple[TrustedKey, ...] | None:
        if "keys" not in department:
            return ()
        entries = department["keys"]
        if not isinstance(entries, list):
            self.problem(f"{path}.keys", f"must be an array of tables, got {_describe(entries)}")
            return None
        keys: list[TrustedKey] = []
        complete = True
        for i, value in enumerate(entries):
            key = self.key(value, f"{path}.keys[{i}]", owner=owner, key_owner=key_owner)
            if key is None:
                complete = False
            else:
                keys.append(key)
        return tuple(keys) if complete else None

    def key(
        self, value: object, path: str, *, owner: str, key_owner: dict[str, str]
    ) -> TrustedKey | None:
        table = self.table(
            value,
            path,
            required=("public_key", "not_before", "status"),
            optional=("key_id", "not_after"),
        )
        if table is None:
            return None
        public_key = None
        pem = self.typed(table, "public_key", path, str, "a PEM 'PUBLIC KEY' block")
        if pem is not None:
            try:
                public_key = PublicKey.from_pem(pem.encode("utf-8"))
            except MalformedKey as exc:
                self.problem(f"{path}.public_key", str(exc))
        if public_key is not None and "key_id" in table:
            given = self.typed(table, "key_id", path, str, "a string")
            if given is not None and given != public_key.key_id:
                hint = "" if _KEY_ID.fullmatch(given) else " (64 lowercase hex digits)"
                self.problem(
                    f"{path}.key_id",
                    f"{given!r} is not the id of this public key{hint}; its id is "
                    f"{public_key.key_id}",
                )
                public_key = None
        if public_key is not None:
            first = key_owner.setdefault(public_key.key_id, path)
            if first != path:
                self.problem(
                    f"{path}.public_key",
                    f"key {public_key.key_id} is already declared at {first} "
                    f"(line {self.line(first)}); a key belongs to one department",
                )
                public_key = None
        not_before = self.typed(table, "not_before", path, datetime.date, "a TOML date")
        not_after = self.typed(table, "not_after", path, datetime.date, "a TOML date")
        status = self.choice(table, "status", path, KeyStatus)
        if status is KeyStatus.RETIRED and "not_after" not in table:
            self.problem(
                path,
                "a retired key needs 'not_after' (its last valid day), so that what it "
                "signed before retirement still verifies and nothing after does",
            )
            return None
        if not_before is not None and not_after is not None and not_after < not_before:
            self.problem(
                f"{path}.not_after",
                f"{not_after.isoformat()} is before not_before {not_before.isoformat()}",
            )
            return None
        if public_key is None or not_before is None or status is None:
            return None
        if "not_after" in table and not_after is None:
            return None
        return TrustedKey(
            public_key=public_key,
            owner=owner,
            not_before=not_before,
            not_after=not_after,
            status=status,
        )

    def choice(self, table: Mapping[str, Any], key: str, path: str, enum: type[_E]) -> _E | None:
        value = self.typed(table, key, path, str, "a string")
        if value is None:
            return None
        try:
            return enum(value)
        except ValueError:
            allowed = " | ".join(member.value for member in enum)
            self.problem(join_path(path, key), f"{value!r} is not one of {allowed}")
            return None

    def certificate_types(
        self,
        document: Mapping[str, Any],
        settings: Settings | None,
        departments: Mapping[str, Department],
    ) -> dict[str, CertificateType]:
        accept_legacy = settings.accept_legacy_uscc if settings is not None else False
        declared = self._declared_departments
        types: dict[str, CertificateType] = {}
        first_code: dict[str, str] = {}
        for path, value in self.array_of_tables(document, "certificate_types"):
            table = self.table(value, path, required=("code", "name", "kind", "issuers"))
            if table is None:
                continue
            code = self.text(table, "code", path, max_length=_CODE_MAX_LENGTH)
            if code is not None and not (
                self._first(first_code, code, f"{path}.code", "certificate type code")
                and self.type_code(code, f"{path}.code", accept_legacy=accept_legacy)
            ):
                code = None
            name = self.text(table, "name", path)
            kind = self.choice(table, "kind", path, CertificateKind)
            issuers = self.string_list(table, "issuers", path, allow_empty=False)
            if issuers is not None and not self.all_declared(
                issuers, declared, "a declared department code"
            ):
                issuers = None
            if code is None or name is None or kind is None or issuers is None:
                continue
            if any(issuer not in departments for _, issuer in issuers):
                continue  # the issuer itself is invalid and reported there
            types[code] = CertificateType(
                code=code, name=name, kind=kind, issuer_codes=tuple(i for _, i in issuers)
            )
        self._declared_types = set(first_code)
        return types

    def type_code(self, code: str, path: str, *, accept_legacy: bool) -> bool:
        if (
            len(code) != _TYPE_CODE_LENGTH
            or not code[_USCC_LENGTH:].isascii()
            or not code[_USCC_LENGTH:].isdigit()
        ):
            self.problem(
                path,
                f"{code!r} is not a type code: expected {_TYPE_CODE_LENGTH} characters, the "
                f"defining department's USCC and 3 digits",
            )
            return False
        try:
            check_holder(
                IdType.USCC, code[:_USCC_LENGTH], accept_legacy_uscc=accept_legacy, field=path
            )
        except InvalidArgument as exc:
            description = exc.violations[0].description if exc.violations else exc.message
            self.problem(
                path,
                f"the first {_USCC_LENGTH} characters of {code!r} are not a valid USCC: "
                f"{description}",
            )
            return False
        return True

    def service_items(
        self, document: Mapping[str, Any], types: Mapping[str, CertificateType]
    ) -> dict[str, ServiceItem]:
        declared = self._declared_types
        items: dict[str, ServiceItem] = {}
        first_code: dict[str, str] = {}
        for path, value in self.array_of_tables(document, "service_items"):
            table = self.table(
                value, path, required=("code", "name"), optional=("materials", "consent_required")
            )
            if table is None:
                continue
            consent = self.typed(table, "consent_required", path, bool, "true or false")
            code = self.code(table, "code", path)
            if code is not None and not self._first(
                first_code, code, f"{path}.code", "service item code"
            ):
                code = None
            name = self.text(table, "name", path)
            materials = self.materials(table, path, declared=declared, types=types)
            if code is not None and name is not None and materials is not None:
                items[code] = ServiceItem(
                    code=code, name=name, materials=materials, consent_required=bool(consent)
                )
        self._declared_items = set(first_code)
        return items

    def materials(
        self,
        item: Mapping[str, Any],
        path: str,
        *,
        declared: set[str],
        types: Mapping[str, CertificateType],
    ) -> tuple[Material, ...] | None:
        entries = item.get("materials", [])
        if not isinstance(entries, list):
            self.problem(
                f"{path}.materials", f"must be an array of tables, got {_describe(entries)}"
            )
            return None
        materials: list[Material] = []
        complete = True
        first_code: dict[str, str] = {}
        for i, value in enumerate(entries):
            where = f"{path}.materials[{i}]"
            table = self.table(value, where, required=("code", "name", "types"))
            if table is None:
                complete = False
                continue
            code = self.code(table, "code", where)
            if code is not None and not self._first(
                first_code, code, f"{where}.code", "material code in this item"
            ):
                code = None
            name = self.text(table, "name", where)
            type_codes = self.string_list(table, "types", where)
            if type_codes is not None and not self.all_declared(
                type_codes, declared, "a declared certificate type code"
            ):
                type_codes = None
            if code is None or name is None or type_codes is None:
                complete = False
                continue
            materials.append(
                Material(code=code, name=name, type_codes=tuple(t for _, t in type_codes))
            )
        if not complete or any(t not in types for m in materials for t in m.type_codes):
            return None
        return tuple(materials)

    def principals(
        self,
        document: Mapping[str, Any],
        departments: Mapping[str, Department],
        items: Mapping[str, ServiceItem],
    ) -> dict[str, Principal]:
        principals: dict[str, Principal] = {}
        first_name: dict[str, str] = {}
        for path, value in self.array_of_tables(document, "principals"):
            table = self.table(
                value,
                path,
                required=("name", "role"),
                optional=("department", "service_items", "rate_limit"),
            )
            if table is None:
                continue
            name = self.typed(table, "name", path, str, "a string")
            if name is not None:
                problem = principal_name_problem(name)
                if problem is not None:
                    self.problem(f"{path}.name", problem)
                    name = None
                elif not self._first(first_name, name, f"{path}.name", "principal name"):
                    name = None
            role = self.choice(table, "role", path, Role)
            department = self.principal_department(table, path, role)
            service_items = self.principal_items(table, path, role)
            rate_limit = None
            if "rate_limit" in table:
                rate_limit = self.rate_limit(table["rate_limit"], f"{path}.rate_limit")
                if rate_limit is None:
                    continue
            if name is None or role is None or department is None or service_items is None:
                continue
            if (department and department not in departments) or not service_items <= set(items):
                continue  # the department or item is itself invalid, and reported there
            principals[name] = Principal(
                name=name,
                role=role,
                department_code=department or None,
                service_items=service_items,
                rate_limit=rate_limit,
            )
        return principals

    def principal_department(
        self, table: Mapping[str, Any], path: str, role: Role | None
    ) -> str | None:
        """The department code, "" when the role has none, None after a problem."""
        if role is not Role.DEPARTMENT:
            if role is not None and "department" in table:
                self.problem(
                    f"{path}.department",
                    f"only DEPARTMENT principals have a department, not {role}",
                )
                return None
            return ""
        if "department" not in table:
            self.problem(path, "a DEPARTMENT principal needs 'department' (its department code)")
            return None
        department = self.text(table, "department", path)
        if department is not None and department not in self._declared_departments:
            self.problem(f"{path}.department", f"{department!r} is not a declared department code")
            return None
        return department

    def principal_items(
        self, table: Mapping[str, Any], path: str, role: Role | None
    ) -> frozenset[str] | None:
        """The service item codes (empty when the role has none), None after a problem."""
        if role is not Role.INTAKE:
            if role is not None and "service_items" in table:
                self.problem(
                    f"{path}.service_items",
                    f"only INTAKE principals have service_items, not {role}",
                )
                return None
            return frozenset()
        if "service_items" not in table:
            self.problem(path, "an INTAKE principal needs 'service_items' (service item codes)")
            return None
        listed = self.string_list(table, "service_items", path, allow_empty=False)
        if listed is None or not self.all_declared(
            listed, self._declared_items, "a declared service item code"
        ):
            return None
        return frozenset(code for _, code in listed)

    def all_declared(
        self, listed: Iterable[tuple[str, str]], declared: set[str], what: str
    ) -> bool:
        ok = True
        for element, code in listed:
            if code not in declared:
                self.problem(element, f"{code!r} is not {what}")
                ok = False
        return ok

    def rate_limit(self, value: object, path: str) -> RateLimitSpec | None:
        table = self.table(value, path, required=("per_second", "burst"))
        if table is None:
            return None
        per_second = table.get("per_second", _MISSING)
        rate: float | None = None
        if per_second is _MISSING:
            pass
        elif isinstance(per_second, bool) or not isinstance(per_second, int | float):
            self.problem(f"{path}.per_second", f"must be a number, got {_describe(per_second)}")
        elif not math.isfinite(per_second) or per_second <= 0:
            self.problem(f"{path}.per_second", f"must be a positive number, got {per_second}")
        else:
            rate = float(per_second)
        burst = self.typed(table, "burst", path, int, "an integer")
        if burst is not None and burst < 1:
            self.problem(f"{path}.burst", f"must be at least 1, got {burst}")
            burst = None
        if rate is None or burst is None:
            return None
        return RateLimitSpec(per_second=rate, burst=burst)

    def _first(self, first: dict[str, str], value: str, path: str, what: str) -> bool:
        """Record where ``value`` first appears; report and return False on a repeat."""
        previous = first.setdefault(value, path)
        if previous == path:
            return True
        self.problem(
            path,
            f"duplicate {what} {value!r}, first declared at {previous} "
            f"(line {self.line(previous)})",
        )
        return False
