"""registry.toml: the documented example, every class of problem with its line, derived fields."""

from __future__ import annotations

import datetime
import math
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from certhub.hub.domain.certificate import CertificateKind
from certhub.hub.domain.holder import uscc
from certhub.hub.registry import (
    Registry,
    RegistryError,
    RegistryProblem,
    Role,
    load_registry_file,
    parse_registry,
    registry_digest,
)
from certhub.signing.keys import Algorithm, KeyStatus, PrivateKey

EXAMPLE = Path(__file__).resolve().parents[3] / "docs" / "registry.example.toml"

DEPT = uscc("11350102MB0000001")
DEPT2 = uscc("11350102MB0000002")
TYPE = DEPT + "001"
TYPE2 = DEPT + "002"
ITEM = "350102-XK-001"
KEY = PrivateKey.generate(Algorithm.ED25519).public_key
KEY2 = PrivateKey.generate(Algorithm.ECDSA_P256_SHA256).public_key


def pem(key_pem: bytes) -> str:
    return key_pem.decode().strip()


def key_block(public_pem: str = pem(KEY.to_pem()), **extra: str) -> str:
    lines = [
        "  [[departments.keys]]",
        f'  public_key = """\n{public_pem}\n"""',
        "  not_before = 2024-01-01",
        '  status = "active"',
    ]
    for name, value in extra.items():
        lines = [line for line in lines if not line.startswith(f"  {name} =")]
        lines.append(f"  {name} = {value}")
    return "\n".join(lines) + "\n"


def valid_text(*, department_extra: str = "", principal_extra: str = "") -> str:
    """A small registry that parses; tests append or substitute the part they break."""
    return f"""\
[settings]
accept_legacy_uscc = false

[[departments]]
code = "{DEPT}"
name = "福州市鼓楼区市场监督管理局"
{department_extra}
{key_block()}
[[departments]]
code = "{DEPT2}"
name = "福州市鼓楼区卫生健康局"

[[certificate_types]]
code = "{TYPE}"
name = "营业执照"
kind = "LICENCE"
issuers = ["{DEPT}"]

[[certificate_types]]
code = "{TYPE2}"
name = "食品经营许可证"
kind = "APPROVAL"
issuers = ["{DEPT}", "{DEPT2}"]

[[service_items]]
code = "{ITEM}"
name = "食品经营许可（新办）"

  [[service_items.materials]]
  code = "M01"
  name = "营业执照"
  types = ["{TYPE}"]

[[principals]]
name = "amr-adapter"
role = "DEPARTMENT"
department = "{DEPT}"
{principal_extra}
[[principals]]
name = "window-1"
role = "INTAKE"
service_items = ["{ITEM}"]
"""


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line of the ``occurrence``-th line containing ``needle``."""
    found = [i for i, line in enumerate(text.split("\n"), start=1) if needle in line]
    assert len(found) >= occurrence, f"{needle!r} occurs {len(found)} times"
    return found[occurrence - 1]


def problems(text: str) -> tuple[RegistryProblem, ...]:
    with pytest.raises(RegistryError) as info:
        parse_registry(text)
    return info.value.errors


def only_problem(text: str) -> RegistryProblem:
    found = problems(text)
    assert len(found) == 1, "\n".join(p.format() for p in found)
    return found[0]


# -- the documented example and derived fields -----------------------------------------------


def test_example_file_parses_with_derived_fields() -> None:
    text, registry = load_registry_file(EXAMPLE)

    assert registry.digest == registry_digest(text)
    assert registry.settings.log_origin == "certhub.example.gov.cn/gulou"
    assert len(registry.departments) == 5
    assert len(registry.types) >= 10
    assert {t.kind for t in registry.types.values()} == set(CertificateKind)
    amr = registry.departments["11350102MB0000001Y"]
    assert amr.name == "福州市鼓楼区市场监督管理局"
    assert amr.type_codes == frozenset(
        code for code, t in registry.types.items() if amr.code in t.issuer_codes
    )
    assert "11100000000013338W011" in amr.type_codes
    assert [k.status for k in amr.keys] == [KeyStatus.RETIRED, KeyStatus.ACTIVE]
    assert amr.keys[0].not_after == datetime.date(2023, 12, 31)
    assert all(k.owner == amr.code for k in amr.keys)
    # Registry.keys indexes every department key by its id.
    all_keys = [k for d in registry.departments.values() for k in d.keys]
    assert len(registry.keys) == len(all_keys) == 7
    assert all(registry.keys[k.public_key.key_id] is k for k in all_keys)
    assert {k.public_key.algorithm for k in all_keys} == set(Algorithm)
    # One item still needs paper; the others are exempt.
    exempt = {code for code, item in registry.service_items.items() if item.exempt}
    assert set(registry.service_items) - exempt == {"350102-000201001000-XK-001"}
    window = registry.principals["gulou-service-centre"]
    assert window.role is Role.INTAKE
    assert window.service_items == frozenset(registry.service_items)
    assert window.rate_limit is not None
    assert window.rate_limit.burst == 400
    assert registry.principals["gulou-amr-adapter"].department_code == amr.code
    assert registry.principals["gulou-ops"].department_code is None


def test_model_is_immutable() -> None:
    registry = parse_registry(valid_text())
    with pytest.raises(TypeError):
        registry.departments["x"] = registry.departments[DEPT]  # type: ignore[index]
    with pytest.raises(AttributeError):
        registry.digest = "x"  # type: ignore[misc]
    assert isinstance(registry.service_items[ITEM].materials, tuple)


def test_derived_fields_of_a_small_registry() -> None:
    registry = parse_registry(valid_text())

    assert registry.departments[DEPT].type_codes == {TYPE, TYPE2}
    assert registry.departments[DEPT2].type_codes == {TYPE2}
    assert registry.departments[DEPT2].keys == ()
    assert registry.types[TYPE2].issuer_codes == (DEPT, DEPT2)
    assert registry.types[TYPE2].kind is CertificateKind.APPROVAL
    item = registry.service_items[ITEM]
    assert item.exempt
    assert item.satisfying_types == {TYPE}
    assert registry.keys[KEY.key_id].public_key == KEY
    assert registry.keys[KEY.key_id].not_after is None
    assert registry.principals["amr-adapter"].service_items == frozenset()


def test_consent_flag_defaults_to_false_and_citizen_apps_are_principals() -> None:
    """Issue 14: an item may require the applicant's approval; the example documents one."""
    assert not parse_registry(valid_text()).service_items[ITEM].consent_required
    text = valid_text().replace(
        'name = "食品经营许可（新办）"\n',
        'name = "食品经营许可（新办）"\nconsent_required = true\n',
    )
    text += '\n[[principals]]\nname = "citizen-app"\nrole = "CITIZEN_APP"\n'
    registry = parse_registry(text)
    assert registry.service_items[ITEM].consent_required
    app = registry.principals["citizen-app"]
    assert app.role is Role.CITIZEN_APP
    assert app.service_items == frozenset()
    assert app.department_code is None
    _, example = load_registry_file(EXAMPLE)
    assert [c for c, i in example.service_items.items() if i.consent_required] == [
        "350102-000201001000-XK-002"
    ]
    assert example.principals["mzt-citizen-app"].role is Role.CITIZEN_APP


def test_consent_flag_must_be_a_boolean_and_citizen_apps_have_no_items() -> None:
    text = valid_text().replace(
        'name = "食品经营许可（新办）"\n',
        'name = "食品经营许可（新办）"\nconsent_required = "yes"\n',
    )
    problem = only_problem(text)
    assert problem.path == "service_items[0].consent_required"
    assert "must be true or false" in problem.message
    text = valid_text() + (
        f'\n[[principals]]\nname = "citizen-app"\nrole = "CITIZEN_APP"\n'
        f'service_items = ["{ITEM}"]\n'
    )
    problem = only_problem(text)
    assert problem.path == "principals[2].service_items"
    assert "only INTAKE principals" in problem.message


def test_exempt_needs_materials_and_a_type_for_each() -> None:
    text = valid_text().replace(
        '  types = ["' + TYPE + '"]\n',
        f'  types = ["{TYPE}"]\n\n  [[service_items.materials]]\n  code = "M02"\n'
        '  name = "场所证明"\n  types = []\n',
    )
    text += '\n[[service_items]]\ncode = "NO-MATERIALS"\nname = "咨询"\n'
    registry = parse_registry(text)

    item = registry.service_items[ITEM]
    assert not item.exempt
    assert [m.paper_only for m in item.materials] == [False, True]
    assert item.satisfying_types == {TYPE}
    assert not registry.service_items["NO-MATERIALS"].exempt


def test_empty_registry() -> None:
    empty = Registry.empty()
    assert parse_registry("") == empty
    assert empty.digest == registry_digest("")
    assert not empty.settings.accept_legacy_uscc


def test_load_registry_file_strips_bom(tmp_path: Path) -> None:
    path = tmp_path / "registry.toml"
    text = valid_text()
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())

    loaded, registry = load_registry_file(path)

    assert loaded == text
    assert registry.digest == registry_digest(text)
    assert registry == parse_registry(text)


def test_load_registry_file_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "registry.toml"
    path.write_bytes(b'[settings]\n\nlog_origin = "\xff"\n')
    with pytest.raises(RegistryError) as info:
        load_registry_file(path)
    assert info.value.errors[0].line == 3
    assert str(info.value).startswith(f"{path}:3: not valid UTF-8")


def test_every_problem_line_names_the_file_as_given_not_its_basename(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "registry.toml"
    path.parent.mkdir()
    path.write_text('[[departments]]\ncode = "X"\n', encoding="utf-8")
    with pytest.raises(RegistryError) as info:
        load_registry_file(path)
    lines = str(info.value).splitlines()
    assert len(lines) >= 2
    assert all(line.startswith(f"{path}:") for line in lines), lines


# -- problems, each with its line and path ---------------------------------------------------


def test_toml_syntax_error_keeps_the_line() -> None:
    text = valid_text().replace('name = "营业执照"', 'name = "营业执照', 1)
    problem = only_problem(text)
    assert problem.line == line_of(text, 'name = "营业执照')
    assert problem.path == ""
    assert problem.message.startswith("TOML syntax:")


def test_error_string_names_file_line_and_path() -> None:
    text = valid_text().replace('kind = "LICENCE"', 'kind = "LICENSE"')
    with pytest.raises(RegistryError) as info:
        parse_registry(text, source="gulou.toml")
    line = line_of(text, 'kind = "LICENSE"')
    assert str(info.value) == (
        f"gulou.toml:{line}: certificate_types[0].kind: 'LICENSE' is not one of LICENCE | APPROVAL"
    )


@pytest.mark.parametrize(
    ("old", "new", "path", "needle"),
    [
        (
            "accept_legacy_uscc = false",
            "accept_legacy_usc = false",
            "settings.accept_legacy_usc",
            "accept_legacy_usc =",
        ),
        (
            'name = "福州市鼓楼区卫生健康局"',
            'nmae = "福州市鼓楼区卫生健康局"',
            "departments[1].nmae",
            "nmae =",
        ),
        (
            "  not_before = 2024-01-01",
            "  not_befor = 2024-01-01",
            "departments[0].keys[0].not_befor",
            "not_befor =",
        ),
        (
            '  code = "M01"',
            '  code = "M01"\n  optional = true',
            "service_items[0].materials[0].optional",
            "optional = true",
        ),
        (
            'service_items = ["' + ITEM + '"]',
            'service_items = ["' + ITEM + '"]\nrole2 = "X"',
            "principals[1].role2",
            "role2 =",
        ),
    ],
)
def test_unknown_keys_are_refused(old: str, new: str, path: str, needle: str) -> None:
    text = valid_text().replace(old, new, 1)
    problem = next(p for p in problems(text) if "unknown key" in p.message)
    assert (problem.path, problem.line) == (path, line_of(text, needle))


def test_unknown_top_level_table_and_inline_table_key() -> None:
    text = valid_text(principal_extra="rate_limit = { per_second = 5.0, burst = 10, brust = 3 }")
    text += "\n[[service_item]]\ncode = 'x'\n"
    found = {p.path: p for p in problems(text)}
    assert found["service_item"].line == line_of(text, "[[service_item]]")
    assert found["principals[0].rate_limit.brust"].line == line_of(text, "brust")


def test_missing_required_key_points_at_the_header() -> None:
    text = valid_text().replace('name = "福州市鼓楼区卫生健康局"\n', "")
    problem = only_problem(text)
    assert problem.path == "departments[1]"
    assert problem.message == "missing required key 'name'"
    assert problem.line == line_of(text, "[[departments]]", occurrence=2)


@pytest.mark.parametrize(
    ("old", "new", "path", "message"),
    [
        (
            'name = "营业执照"',
            "name = 42",
            "certificate_types[0].name",
            "must be a string, got an integer",
        ),
        (
            "  not_before = 2024-01-01",
            '  not_before = "2024-01-01"',
            "departments[0].keys[0].not_before",
            "must be a TOML date, got a string",
        ),
        (
            "  not_before = 2024-01-01",
            "  not_before = 2024-01-01T08:00:00+08:00",
            "departments[0].keys[0].not_before",
            "must be a TOML date, got a date-time",
        ),
        (
            "accept_legacy_uscc = false",
            'accept_legacy_uscc = "no"',
            "settings.accept_legacy_uscc",
            "must be true or false, got a string",
        ),
        (
            f'issuers = ["{DEPT}"]',
            f'issuers = "{DEPT}"',
            "certificate_types[0].issuers",
            "must be an array of strings, got a string",
        ),
        (
            'name = "营业执照"',
            'name = " 营业执照"',
            "certificate_types[0].name",
            "must not start or end with whitespace",
        ),
        ('name = "营业执照"', 'name = ""', "certificate_types[0].name", "must not be empty"),
    ],
)
def test_wrong_types_and_shapes(old: str, new: str, path: str, message: str) -> None:
    text = valid_text().replace(old, new, 1)
    problem = only_problem(text)
    assert (problem.path, problem.message) == (path, message)
    assert problem.line == line_of(text, new.split("\n", maxsplit=1)[0])


def test_duplicates_are_reported_at_the_repeat_with_the_first_line() -> None:
    text = valid_text().replace(f'code = "{DEPT2}"', f'code = "{DEPT}"')
    text = text.replace('name = "window-1"', 'name = "amr-adapter"')
    found = problems(text)

    by_path = {p.path: p for p in found}
    dept = by_path["departments[1].code"]
    assert dept.line == line_of(text, f'code = "{DEPT}"', occurrence=2)
    assert f"duplicate department code '{DEPT}'" in dept.message
    first_line = line_of(text, f'code = "{DEPT}"')
    assert f"(line {first_line})" in dept.message
    principal = by_path["principals[1].name"]
    assert principal.line == line_of(text, 'name = "amr-adapter"', occurrence=2)
    assert "duplicate principal name" in principal.message


def test_duplicate_names_codes_and_list_entries() -> None:
    text = valid_text().replace("福州市鼓楼区卫生健康局", "福州市鼓楼区市场监督管理局")
    text = text.replace(f'code = "{TYPE2}"', f'code = "{TYPE}"')
    text = text.replace(f'types = ["{TYPE}"]', f'types = ["{TYPE}", "{TYPE}"]')
    paths = {p.path for p in problems(text)}
    assert paths >= {
        "departments[1].name",
        "certificate_types[1].code",
        "service_items[0].materials[0].types[1]",
    }


def test_the_same_key_in_two_departments_is_refused() -> None:
    text = valid_text().replace(
        'name = "福州市鼓楼区卫生健康局"\n', 'name = "福州市鼓楼区卫生健康局"\n' + key_block()
    )
    problem = only_problem(text)
    assert problem.path == "departments[1].keys[0].public_key"
    assert problem.line == line_of(text, "public_key =", occurrence=2)
    assert "belongs to one department" in problem.message


def test_department_code_must_be_a_valid_uscc() -> None:
    bad = DEPT[:-1] + ("0" if DEPT[-1] != "0" else "1")
    text = valid_text().replace(f'code = "{DEPT}"', f'code = "{bad}"')
    text = text.replace(f'department = "{DEPT}"', f'department = "{bad}"')
    found = problems(text)
    # Reported once where it is declared, not again at the principal that names it; the
    # types naming the old code are reported as undeclared.
    dept = next(p for p in found if p.path == "departments[0].code")
    assert dept.line == line_of(text, f'code = "{bad}"')
    assert "is not a valid USCC: check character is" in dept.message
    assert not any(p.path.startswith("principals") for p in found)
    assert {p.path for p in found} == {
        "departments[0].code",
        "certificate_types[0].issuers[0]",
        "certificate_types[1].issuers[0]",
    }


def test_legacy_uscc_is_let_through_and_flagged_only_when_the_setting_says_so() -> None:
    legacy = "91350100M0001TGQXM"  # an early Fujian pilot code with a bad check char
    text = valid_text().replace(DEPT2, legacy)
    assert only_problem(text).path == "departments[1].code"

    registry = parse_registry(
        text.replace("accept_legacy_uscc = false", "accept_legacy_uscc = true")
    )
    assert registry.departments[legacy].legacy_uscc
    assert not registry.departments[DEPT].legacy_uscc


def test_department_code_in_lower_case_is_refused() -> None:
    lower = "11350102mb00000022"
    text = valid_text().replace(f'code = "{DEPT2}"', f'code = "{lower}"')
    text = text.replace(f'"{DEPT}", "{DEPT2}"', f'"{DEPT}", "{lower}"')
    problem = only_problem(text)
    assert problem.path == "departments[1].code"
    assert DEPT2 in problem.message


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (DEPT + "01", "expected 21 characters"),
        (DEPT + "0A1", "expected 21 characters"),
        (
            DEPT[:-1] + "0" + "001" if DEPT[-1] != "0" else DEPT[:-1] + "1001",
            "are not a valid USCC: check character",
        ),
    ],
)
def test_type_code_format(code: str, message: str) -> None:
    text = valid_text().replace(f'code = "{TYPE}"', f'code = "{code}"')
    text = text.replace(f'types = ["{TYPE}"]', f'types = ["{code}"]')
    problem = only_problem(text)
    assert problem.path == "certificate_types[0].code"
    assert message in problem.message
    assert problem.line == line_of(text, f'code = "{code}"')


def test_undeclared_issuer_in_a_multi_line_array_points_at_its_element() -> None:
    other = uscc("11350102MB0000009")
    text = valid_text().replace(
        f'issuers = ["{DEPT}", "{DEPT2}"]', f'issuers = [\n  "{DEPT}",\n  "{other}",\n]'
    )
    problem = only_problem(text)
    assert problem.path == "certificate_types[1].issuers[1]"
    assert problem.line == line_of(text, f'  "{other}",')
    assert problem.message == f"'{other}' is not a declared department code"


def test_issuers_must_not_be_empty() -> None:
    text = valid_text().replace(f'issuers = ["{DEPT}"]', "issuers = []")
    problem = only_problem(text)
    assert (problem.path, problem.message) == ("certificate_types[0].issuers", "must not be empty")


def test_material_types_must_be_declared() -> None:
    text = valid_text().replace(f'types = ["{TYPE}"]', f'types = ["{TYPE}", "{DEPT}999"]')
    problem = only_problem(text)
    assert problem.path == "service_items[0].materials[0].types[1]"
    assert problem.line == line_of(text, "types = [")


@pytest.mark.parametrize(
    ("old", "new", "path", "message"),
    [
        (f'department = "{DEPT}"\n', "", "principals[0]", "needs 'department'"),
        (
            'role = "INTAKE"',
            f'role = "INTAKE"\ndepartment = "{DEPT}"',
            "principals[1].department",
            "only DEPARTMENT principals have a department",
        ),
        (f'service_items = ["{ITEM}"]', "", "principals[1]", "needs 'service_items'"),
        (
            f'service_items = ["{ITEM}"]',
            "service_items = []",
            "principals[1].service_items",
            "must not be empty",
        ),
        (
            f'service_items = ["{ITEM}"]',
            'service_items = ["NOPE"]',
            "principals[1].service_items[0]",
            "'NOPE' is not a declared service item code",
        ),
        (
            'role = "INTAKE"\nservice_items',
            'role = "AUDITOR"\nservice_items',
            "principals[1].service_items",
            "only INTAKE principals have service_items",
        ),
        (
            f'department = "{DEPT}"',
            f'department = "{uscc("11350102MB0000009")}"',
            "principals[0].department",
            "is not a declared department code",
        ),
        (
            'role = "DEPARTMENT"',
            'role = "department"',
            "principals[0].role",
            "is not one of DEPARTMENT | INTAKE | AUDITOR | OPERATOR | CITIZEN_APP",
        ),
        (
            'name = "window-1"',
            'name = "window/1"',
            "principals[1].name",
            "is not a valid principal name",
        ),
        (
            'name = "window-1"',
            f'name = "{"w" * 65}"',
            "principals[1].name",
            "at most 64 characters",
        ),
    ],
)
def test_principal_rules(old: str, new: str, path: str, message: str) -> None:
    assert old in valid_text()
    text = valid_text().replace(old, new, 1)
    problem = only_problem(text)
    assert problem.path == path
    assert message in problem.message
    if new:
        needle = new.rsplit("\n", maxsplit=1)[-1]
        expected = line_of(text, needle, occurrence=text.count(needle))
    else:
        expected = line_of(text, "[[principals]]", occurrence=1 if path == "principals[0]" else 2)
    assert problem.line == expected


@pytest.mark.parametrize(
    ("rate_limit", "path", "message"),
    [
        ("{ per_second = 0.0, burst = 10 }", "per_second", "must be a positive number"),
        ("{ per_second = -1, burst = 10 }", "per_second", "must be a positive number"),
        ("{ per_second = nan, burst = 10 }", "per_second", "must be a positive number"),
        ("{ per_second = inf, burst = 10 }", "per_second", "must be a positive number"),
        ("{ per_second = 5.0, burst = 0 }", "burst", "must be at least 1"),
        ("{ per_second = 5.0, burst = true }", "burst", "must be an integer, got a boolean"),
        ("{ per_second = 5.0 }", "", "missing required key 'burst'"),
    ],
)
def test_rate_limit_must_be_positive(rate_limit: str, path: str, message: str) -> None:
    text = valid_text(principal_extra=f"rate_limit = {rate_limit}")
    problem = only_problem(text)
    assert problem.path == "principals[0].rate_limit" + (f".{path}" if path else "")
    assert message in problem.message
    assert problem.line == line_of(text, "rate_limit =")


def test_rate_limit_accepts_integers_as_rates() -> None:
    text = valid_text(principal_extra="rate_limit = { per_second = 5, burst = 7 }")
    registry = parse_registry(text)
    limit = registry.principals["amr-adapter"].rate_limit
    assert limit is not None
    assert (limit.per_second, limit.burst) == (5.0, 7)
    assert isinstance(limit.per_second, float)
    assert math.isfinite(limit.per_second)


# -- keys ----------------------------------------------------------------------------------


def _with_key(**extra: str) -> str:
    return valid_text(department_extra=key_block(**extra))


def test_second_key_is_parsed_with_its_window() -> None:
    registry = parse_registry(
        _with_key(
            public_key=f'"""\n{pem(KEY2.to_pem())}\n"""', not_after="2025-06-30", status='"retired"'
        )
    )
    key = registry.keys[KEY2.key_id]
    assert key.status is KeyStatus.RETIRED
    assert key.not_before == datetime.date(2024, 1, 1)
    assert key.not_after == datetime.date(2025, 6, 30)
    assert key.public_key.algorithm is Algorithm.ECDSA_P256_SHA256
    department_keys = registry.departments[DEPT].keys
    assert [k.public_key.key_id for k in department_keys] == [KEY2.key_id, KEY.key_id]


def test_retired_key_without_not_after_is_refused() -> None:
    text = _with_key(public_key=f'"""\n{pem(KEY2.to_pem())}\n"""', status='"retired"')
    problem = only_problem(text)
    assert problem.path == "departments[0].keys[0]"
    assert "retired key needs 'not_after'" in problem.message
    assert problem.line == line_of(text, "[[departments.keys]]")


def test_not_after_before_not_before_is_refused() -> None:
    text = _with_key(public_key=f'"""\n{pem(KEY2.to_pem())}\n"""', not_after="2023-12-31")
    problem = only_problem(text)
    assert problem.path == "departments[0].keys[0].not_after"
    assert problem.line == line_of(text, "not_after = 2023-12-31")


def test_key_status_must_be_known() -> None:
    text = _with_key(public_key=f'"""\n{pem(KEY2.to_pem())}\n"""', status='"revoked"')
    problem = only_problem(text)
    assert problem.path == "departments[0].keys[0].status"
    assert problem.message == "'revoked' is not one of active | retired | compromised"


def test_key_id_must_match_when_given() -> None:
    assert parse_registry(
        _with_key(public_key=f'"""\n{pem(KEY2.to_pem())}\n"""', key_id=f'"{KEY2.key_id}"')
    )
    text = _with_key(public_key=f'"""\n{pem(KEY2.to_pem())}\n"""', key_id=f'"{KEY.key_id}"')
    problem = only_problem(text)
    assert problem.path == "departments[0].keys[0].key_id"
    assert KEY2.key_id in problem.message
    assert problem.line == line_of(text, f'key_id = "{KEY.key_id}"')


def _foreign_pem(kind: str) -> str:
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if kind == "rsa":
        private = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    else:
        private = ec.generate_private_key(ec.SECP384R1())
    return pem(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


@pytest.mark.parametrize(
    ("public_key", "message"),
    [
        ("rsa", "only Ed25519 and ECDSA P-256"),
        ("p384", "only P-256"),
        ("garbage", "not a valid PEM"),
    ],
)
def test_public_key_must_be_ed25519_or_p256(public_key: str, message: str) -> None:
    body = "not a key" if public_key == "garbage" else _foreign_pem(public_key)
    text = _with_key(public_key=f'"""\n{body}\n"""')
    problem = only_problem(text)
    assert problem.path == "departments[0].keys[0].public_key"
    assert message in problem.message
    assert problem.line == line_of(text, "public_key =")


# -- all at once, and the line locator -------------------------------------------------------


def test_all_problems_are_collected_in_line_order() -> None:
    text = (
        valid_text(principal_extra="rate_limit = { per_second = 0, burst = 1 }")
        .replace('kind = "APPROVAL"', 'kind = "PERMIT"')
        .replace("福州市鼓楼区卫生健康局", "")
        .replace('  code = "M01"', '  code = "M 01"')
        .replace("  not_before = 2024-01-01", "  not_before = 2024-01-01\n  colour = 'red'")
    )
    found = problems(text)
    assert [p.path for p in found] == [
        "departments[0].keys[0].colour",
        "departments[1].name",
        "certificate_types[1].kind",
        "service_items[0].materials[0].code",
        "principals[0].rate_limit.per_second",
    ]
    assert [p.line for p in found] == sorted(p.line or 0 for p in found)
    assert len(str(RegistryError(found)).splitlines()) == 5


def test_locator_is_not_fooled_by_strings_comments_and_dotted_keys() -> None:
    text = f"""\
# [[departments]] in a comment is not a header
[settings]
log_origin = "a/b"   # a comment with = and [[x]]

[[departments]]
code = "{DEPT}"
name = \"\"\"福州市
[[departments]]
鼓楼区\"\"\"

[[departments]]
code = '{DEPT2}'
"name" = "卫健局"
  [[departments.keys]]
  public_key = '''
{pem(KEY.to_pem())}
'''
  not_before = 2024-01-01
  status = "actif"
"""
    found = problems(text)
    assert [(p.path, p.line) for p in found] == [
        ("departments[0].name", 7),
        ("departments[1].keys[0].status", line_of(text, 'status = "actif"')),
    ]
    assert "contains control" in found[0].message  # the newline inside the name


def test_dotted_keys_are_located() -> None:
    text = """\
settings.accept_legacy_uscc = false

[[principals]]
name = "ops"
role = "OPERATOR"

[[principals]]
name = "ops2"
role = "OPERATOR"
rate_limit.per_second = 1.0
rate_limit.burst = -1
"""
    problem = only_problem(text)
    assert (problem.path, problem.line) == ("principals[1].rate_limit.burst", 11)


def test_inline_arrays_of_tables_are_located() -> None:
    text = """\
principals = [
  { name = "ops", role = "OPERATOR" },
  { name = "audit", role = "AUDITOR" },

  { name = "audit2", role = "AUDITOR", department = "x" },
]
"""
    problem = only_problem(text)
    assert (problem.path, problem.line) == ("principals[2].department", 5)


# -- scale ---------------------------------------------------------------------------------


def generated_registry(*, types: int = 571, items: int = 3458) -> str:
    """A registry of the reference district's size: 571 types, 3,458 service items."""
    departments = [uscc(f"11350102MB{i:07d}") for i in range(1, 41)]
    parts = ["[settings]\naccept_legacy_uscc = false\n"]
    for i, code in enumerate(departments):
        public = pem(PrivateKey.generate(Algorithm.ED25519).public_key.to_pem())
        parts.append(
            f'[[departments]]\ncode = "{code}"\nname = "部门{i}"\n'
            f'  [[departments.keys]]\n  public_key = """\n{public}\n"""\n'
            f'  not_before = 2024-01-01\n  status = "active"\n'
        )
    type_codes = [f"{departments[i % len(departments)]}{i % 1000:03d}" for i in range(types)]
    for i, code in enumerate(type_codes):
        kind = "LICENCE" if i % 3 else "APPROVAL"
        issuer = departments[i % len(departments)]
        parts.append(
            f'[[certificate_types]]\ncode = "{code}"\nname = "证照{i}"\nkind = "{kind}"\n'
            f'issuers = ["{issuer}"]\n'
        )
    item_codes = []
    for i in range(items):
        code = f"350102-{i:06d}-XK-001"
        item_codes.append(code)
        parts.append(f'[[service_items]]\ncode = "{code}"\nname = "事项{i}"\n')
        for m in range(3):
            listed = "" if (i % 12 == 0 and m == 2) else f'"{type_codes[(i + m) % types]}"'
            parts.append(
                f'  [[service_items.materials]]\n  code = "M{m:02d}"\n  name = "材料{m}"\n'
                f"  types = [{listed}]\n"
            )
    for p in range(81):
        listed = ", ".join(f'"{c}"' for c in item_codes[p * 40 : p * 40 + 40] or item_codes[:1])
        parts.append(
            f'[[principals]]\nname = "window-{p}"\nrole = "INTAKE"\nservice_items = [{listed}]\n'
        )
    return "\n".join(parts)


def test_a_district_sized_registry_parses() -> None:
    registry = parse_registry(generated_registry())
    assert len(registry.types) == 571
    assert len(registry.service_items) == 3458
    assert len(registry.principals) == 81
    assert sum(item.exempt for item in registry.service_items.values()) == 3458 - 289


def test_a_late_problem_in_a_large_registry_has_the_right_line() -> None:
    text = generated_registry(types=50, items=500).replace(
        'name = "事项497"', 'name = "事项497"\nowner = "x"'
    )
    problem = only_problem(text)
    assert problem.path == "service_items[497].owner"
    assert problem.line == line_of(text, 'owner = "x"')
