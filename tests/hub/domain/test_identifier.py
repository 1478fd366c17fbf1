from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from certhub.core.codes import mod37_36_product
from certhub.hub.domain.holder import uscc
from certhub.hub.domain.identifier import (
    GBT_PREFIX,
    MAX_CERTIFICATE_ID_LENGTH,
    MAX_SERIAL_LENGTH,
    CertificateIdentifier,
    check_certificate_id,
    check_char_mod37_36,
    check_type_code,
    lineage_of,
    make_identifier,
    parse_identifier,
)
from certhub.hub.errors import InvalidArgument

# DESIGN.md's example of an identifier that passes its check character.
KNOWN_GOOD = "1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.001.U"
TYPE_CODE = "11100000000013338W011"
ISSUER = "11430000006122244L"
SERIAL = "20230000403"
MOD37_36_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"


def descriptions(exc: pytest.ExceptionInfo[InvalidArgument]) -> list[str]:
    return [v.description for v in exc.value.violations]


def test_known_good_identifier_parses() -> None:
    parsed = parse_identifier(KNOWN_GOOD)
    assert parsed == CertificateIdentifier(
        type_code=TYPE_CODE, issuer=ISSUER, serial=SERIAL, version=1
    )
    assert str(parsed) == KNOWN_GOOD
    assert parsed.lineage == f"{GBT_PREFIX}{TYPE_CODE}.{ISSUER}.{SERIAL}"


def test_check_char_of_the_known_good_identifier() -> None:
    assert check_char_mod37_36(f"{TYPE_CODE}{ISSUER}{SERIAL}001") == "U"


def _single_character_mutations() -> list[str]:
    return [
        KNOWN_GOOD[:i] + replacement + KNOWN_GOOD[i + 1 :]
        for i, original in enumerate(KNOWN_GOOD)
        for replacement in MOD37_36_ALPHABET + ".a-"
        if replacement != original
    ]


def test_every_single_character_mutation_of_the_known_good_id_fails() -> None:
    mutations = _single_character_mutations()
    accepted = []
    for mutated in mutations:
        try:
            parse_identifier(mutated)
        except InvalidArgument:
            continue
        accepted.append(mutated)
    assert len(mutations) > 2500
    assert accepted == []


def test_wrong_check_char_names_the_expected_one() -> None:
    with pytest.raises(InvalidArgument) as exc:
        parse_identifier(KNOWN_GOOD[:-1] + "V", field="payload.certificate_id")
    (only,) = exc.value.violations
    assert only.field == "payload.certificate_id"
    assert only.description == "check character is V, expected U"
    assert exc.value.reason == "INVALID_CERTIFICATE_ID"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("1.2.156.3005.3.X", "starts with 1.2.156.3005.2."),
        (f"{GBT_PREFIX}{TYPE_CODE}.{ISSUER}.{SERIAL}.001", "expected 5 dot-separated parts"),
        (f"{GBT_PREFIX}{TYPE_CODE}.{ISSUER}.{SERIAL}.X.001.U", "got 6"),
        (f"{GBT_PREFIX}{TYPE_CODE}0.{ISSUER}.{SERIAL}.001.U", "type code must be 21 characters"),
        (f"{GBT_PREFIX}1110000000001333OW011.{ISSUER}.{SERIAL}.001.U", "department USCC"),
        (f"{GBT_PREFIX}11100000000013338W01A.{ISSUER}.{SERIAL}.001.U", "followed by 3 digits"),
        (f"{GBT_PREFIX}{TYPE_CODE}.1143000000612224L.{SERIAL}.001.U", "issuer must be 18"),
        (f"{GBT_PREFIX}{TYPE_CODE}.1143000000612224IL.{SERIAL}.001.U", "issuer must be 18"),
        (f"{GBT_PREFIX}{TYPE_CODE}.{ISSUER}.2023abc.001.U", "serial must be"),
        (f"{GBT_PREFIX}{TYPE_CODE}.{ISSUER}..001.U", "serial must be"),
        (f"{GBT_PREFIX}{TYPE_CODE}.{ISSUER}.{'1' * 65}.001.U", "serial must be 1-64"),
        (f"{GBT_PREFIX}{TYPE_CODE}.{ISSUER}.{SERIAL}.01.U", "version must be 3 digits"),
        (f"{GBT_PREFIX}{TYPE_CODE}.{ISSUER}.{SERIAL}.000.U", "001 or higher"),
        (f"{GBT_PREFIX}{TYPE_CODE}.{ISSUER}.{SERIAL}.００1.U", "version must be 3 digits"),
        (f"{GBT_PREFIX}{TYPE_CODE}.{ISSUER}.{SERIAL}.001.UU", "check must be one character"),
        (f"{GBT_PREFIX}{TYPE_CODE}.{ISSUER}.{SERIAL}.001.u", "check must be one character"),
    ],
)
def test_malformed_identifiers_name_the_problem(text: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        parse_identifier(text)
    assert any(fragment in d for d in descriptions(exc)), descriptions(exc)
    assert all(v.field == "certificate_id" for v in exc.value.violations)


def test_several_bad_parts_are_all_reported() -> None:
    with pytest.raises(InvalidArgument) as exc:
        parse_identifier(f"{GBT_PREFIX}X.Y.z.0.U")
    assert len(exc.value.violations) == 4


def test_make_identifier_computes_the_check_char() -> None:
    made = make_identifier(type_code=TYPE_CODE, issuer=ISSUER, serial=SERIAL, version=1)
    assert str(made) == KNOWN_GOOD
    assert str(make_identifier(type_code=TYPE_CODE, issuer=ISSUER, serial=SERIAL, version=12)) == (
        f"{GBT_PREFIX}{TYPE_CODE}.{ISSUER}.{SERIAL}.012."
        + check_char_mod37_36(f"{TYPE_CODE}{ISSUER}{SERIAL}012")
    )


@pytest.mark.parametrize(
    ("parts", "fragment"),
    [
        ({"type_code": "111", "issuer": ISSUER, "serial": SERIAL, "version": 1}, "type code"),
        ({"type_code": TYPE_CODE, "issuer": "X", "serial": SERIAL, "version": 1}, "issuer"),
        ({"type_code": TYPE_CODE, "issuer": ISSUER, "serial": "a.b", "version": 1}, "serial"),
        ({"type_code": TYPE_CODE, "issuer": ISSUER, "serial": SERIAL, "version": 0}, "version"),
        ({"type_code": TYPE_CODE, "issuer": ISSUER, "serial": SERIAL, "version": 1000}, "version"),
    ],
)
def test_make_identifier_rejects_bad_parts(parts: dict[str, object], fragment: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        make_identifier(**parts)  # type: ignore[arg-type]
    assert any(fragment in d for d in descriptions(exc))


def test_check_char_mod37_36_rejects_characters_outside_its_alphabet() -> None:
    for bad in ("", "abc", "A.B"):
        with pytest.raises(ValueError):
            check_char_mod37_36(bad)


@given(
    st.text(alphabet=MOD37_36_ALPHABET, max_size=60),
    st.text(alphabet=MOD37_36_ALPHABET, min_size=1, max_size=30),
)
def test_check_char_carries_over_a_prefix(prefix: str, rest: str) -> None:
    # What the parser does with the type code and issuer every certificate of a type shares.
    start = mod37_36_product(prefix)
    assert check_char_mod37_36(rest, start=start) == check_char_mod37_36(prefix + rest)


def test_running_products_outside_1_to_36_are_refused() -> None:
    for start in (0, 37, -1):
        with pytest.raises(ValueError, match="running product"):
            check_char_mod37_36("A", start=start)
        with pytest.raises(ValueError, match="running product"):
            mod37_36_product("A", start)
    with pytest.raises(ValueError):
        mod37_36_product("a")


def test_a_bad_id_is_reported_alike_every_time() -> None:
    # The checks of a type code and issuer are kept between calls: the problems of the
    # other parts must not pile up on them.
    bad_type_and_serial = f"{GBT_PREFIX}X.{ISSUER}.s.001.U"
    reports = []
    for _ in range(3):
        with pytest.raises(InvalidArgument) as exc:
            parse_identifier(bad_type_and_serial)
        reports.append(descriptions(exc))
    assert reports[0] == reports[1] == reports[2]
    assert len(reports[0]) == 2


def test_lineage_of_gbt_id_drops_version_and_check() -> None:
    v2 = str(make_identifier(type_code=TYPE_CODE, issuer=ISSUER, serial=SERIAL, version=2))
    assert lineage_of(v2) == lineage_of(KNOWN_GOOD) == f"{GBT_PREFIX}{TYPE_CODE}.{ISSUER}.{SERIAL}"


def test_lineage_of_issuer_unique_id_is_the_id() -> None:
    assert lineage_of("FZ-GL/2023:000042") == "FZ-GL/2023:000042"


def test_lineage_of_malformed_gbt_id_is_an_error() -> None:
    with pytest.raises(InvalidArgument):
        lineage_of(KNOWN_GOOD[:-1] + "V")


def test_check_certificate_id_accepts_a_matching_gbt_id() -> None:
    check_certificate_id(KNOWN_GOOD, type_code=TYPE_CODE, issuer=ISSUER, version=1)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"type_code": "11100000000013338W012"}, "differs from type_code"),
        ({"issuer": "91350100M000100Y43"}, "differs from issuer.code"),
        ({"version": 2}, "version 001 differs from version 2"),
    ],
)
def test_check_certificate_id_compares_with_the_payload(
    overrides: dict[str, object], fragment: str
) -> None:
    arguments: dict[str, object] = {"type_code": TYPE_CODE, "issuer": ISSUER, "version": 1}
    arguments.update(overrides)
    with pytest.raises(InvalidArgument) as exc:
        check_certificate_id(KNOWN_GOOD, field="payload.certificate_id", **arguments)  # type: ignore[arg-type]
    (only,) = exc.value.violations
    assert only.field == "payload.certificate_id"
    assert fragment in only.description


@pytest.mark.parametrize(
    "certificate_id", ["A", "FZ-GL/2023:000042", "lic_2023.0001", "x" * MAX_CERTIFICATE_ID_LENGTH]
)
def test_issuer_unique_ids_are_accepted(certificate_id: str) -> None:
    check_certificate_id(certificate_id, type_code=TYPE_CODE, issuer=ISSUER, version=7)


@pytest.mark.parametrize(
    ("certificate_id", "fragment"),
    [
        ("", "1-128 characters"),
        ("x" * (MAX_CERTIFICATE_ID_LENGTH + 1), "1-128 characters"),
        ("证照0001", "may contain only"),
        ("a b", "may contain only"),
        ("a\nb", "may contain only"),
    ],
)
def test_bad_issuer_unique_ids_are_rejected(certificate_id: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        check_certificate_id(certificate_id, type_code=TYPE_CODE, issuer=ISSUER, version=1)
    assert any(fragment in d for d in descriptions(exc))


def test_check_type_code() -> None:
    check_type_code(TYPE_CODE)
    with pytest.raises(InvalidArgument) as exc:
        check_type_code("11100000000013338W01", field="payload.type_code")
    assert exc.value.violations[0].field == "payload.type_code"


usccs = st.text(alphabet=USCC_ALPHABET, min_size=17, max_size=17).map(uscc)
identifiers = st.builds(
    CertificateIdentifier,
    type_code=st.builds(lambda u, n: u + f"{n:03d}", usccs, st.integers(0, 999)),
    issuer=usccs,
    serial=st.text(alphabet=MOD37_36_ALPHABET, min_size=1, max_size=MAX_SERIAL_LENGTH),
    version=st.integers(1, 999),
)


@given(identifiers)
def test_generated_identifiers_round_trip(identifier: CertificateIdentifier) -> None:
    text = str(identifier)
    assert parse_identifier(text) == identifier
    assert len(text) <= MAX_CERTIFICATE_ID_LENGTH
    check_certificate_id(
        text, type_code=identifier.type_code, issuer=identifier.issuer, version=identifier.version
    )


@given(identifiers, st.sampled_from(MOD37_36_ALPHABET))
def test_any_other_check_char_fails(identifier: CertificateIdentifier, replacement: str) -> None:
    text = str(identifier)
    tampered = text[:-1] + replacement
    if tampered == text:
        return
    with pytest.raises(InvalidArgument, match="check character"):
        parse_identifier(tampered)


@given(identifiers, st.data())
def test_any_single_substitution_in_the_serial_fails(
    identifier: CertificateIdentifier, data: st.DataObject
) -> None:
    i = data.draw(st.integers(0, len(identifier.serial) - 1))
    replacement = data.draw(
        st.sampled_from(MOD37_36_ALPHABET).filter(lambda c: c != identifier.serial[i])
    )
    serial = identifier.serial[:i] + replacement + identifier.serial[i + 1 :]
    lineage = f"{GBT_PREFIX}{identifier.type_code}.{identifier.issuer}.{serial}"
    text = f"{lineage}.{identifier.version:03d}.{str(identifier)[-1]}"
    with pytest.raises(InvalidArgument, match="check character"):
        parse_identifier(text)
