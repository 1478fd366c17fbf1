from __future__ import annotations

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from certhub.hub.domain.holder import (
    MAX_DOCUMENT_ID_LENGTH,
    CheckedHolder,
    Holder,
    IdType,
    check_holder,
    is_pilot_uscc_form,
    resident_id,
    resident_id_check_char,
    uscc,
    uscc_check_char,
)
from certhub.hub.errors import InvalidArgument

RESIDENT_CHECK_CHARS = "0123456789X"
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"

# Published examples, each checked by hand against the algorithm before use:
# GB 11643-1999's example ID, and USCCs from GB 32100-2015's example and public registers.
VALID_RESIDENT_IDS = ["11010519491231002X", "110101199003074477"]
VALID_USCCS = [
    "91350100M000100Y43",  # the example in GB 32100-2015
    "91110108551385082Q",
    "91440300708461136T",
    "11430000006122244L",  # the issuer in DESIGN.md's GB/T 36904 example
]
# An early Fujian pilot code: legal, but its check character fails (DESIGN.md).
LEGACY_USCC = "91350100M0001TGQXM"


def violation(exc: pytest.ExceptionInfo[InvalidArgument]) -> tuple[str, str]:
    (only,) = exc.value.violations
    return only.field, only.description


@pytest.mark.parametrize("raw", VALID_RESIDENT_IDS)
def test_published_resident_ids_are_valid(raw: str) -> None:
    checked = check_holder("RESIDENT_ID", raw, accept_legacy_uscc=False)
    assert checked == CheckedHolder(Holder(IdType.RESIDENT_ID, raw), legacy_uscc=False)


def test_resident_id_check_char_known_answers() -> None:
    assert resident_id_check_char("11010519491231002") == "X"
    assert resident_id_check_char("11010119900307447") == "7"


def test_lowercase_x_is_normalised() -> None:
    checked = check_holder("RESIDENT_ID", "11010519491231002x", accept_legacy_uscc=False)
    assert checked.holder.id == "11010519491231002X"


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("11010519491231002", "has 18 characters, got 17"),
        ("11010519491231002X0", "has 18 characters, got 19"),
        ("1101051949123100AX", "first 17 characters"),
        ("１1010519491231002X", "first 17 characters"),  # full-width digit
        ("11010519491231002A", "must be a digit or X"),
        ("110105194913310020", "not a real date"),
        ("110105194902300020", "not a real date"),
        ("440524188001010014", "before 1900"),  # right check char, impossible birth year
        ("11010519491231002 ", "whitespace"),
        (" 11010519491231002X", "whitespace"),
    ],
)
def test_malformed_resident_ids_name_the_problem(raw: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        check_holder("RESIDENT_ID", raw, accept_legacy_uscc=False, field="req.holder")
    field, description = violation(exc)
    assert field == "req.holder.id"
    assert fragment in description
    assert exc.value.reason == "INVALID_HOLDER_ID"


def test_wrong_resident_check_char_says_which_is_expected() -> None:
    with pytest.raises(InvalidArgument) as exc:
        check_holder("RESIDENT_ID", "110105194912310021", accept_legacy_uscc=True)
    assert violation(exc) == ("holder.id", "check character is 1, expected X")
    assert str(exc.value) == "holder.id: check character is 1, expected X"


def test_birth_date_in_the_future_is_rejected() -> None:
    future = resident_id("110105", datetime.date(2999, 1, 1), 1)
    with pytest.raises(InvalidArgument) as exc:
        check_holder("RESIDENT_ID", future, accept_legacy_uscc=False)
    assert "in the future" in violation(exc)[1]


def test_leap_day_is_a_real_date() -> None:
    leap = resident_id("350102", datetime.date(2000, 2, 29), 123)
    assert check_holder("RESIDENT_ID", leap, accept_legacy_uscc=False).holder.id == leap


@pytest.mark.parametrize("raw", VALID_USCCS)
def test_published_usccs_are_valid(raw: str) -> None:
    checked = check_holder("USCC", raw, accept_legacy_uscc=False)
    assert checked == CheckedHolder(Holder(IdType.USCC, raw), legacy_uscc=False)


def test_uscc_check_char_known_answers() -> None:
    assert uscc_check_char("91350100M000100Y4") == "3"
    assert uscc("91440300708461136") == "91440300708461136T"


def test_lowercase_uscc_is_upper_cased() -> None:
    checked = check_holder("USCC", "91350100m000100y43", accept_legacy_uscc=False)
    assert checked.holder.id == "91350100M000100Y43"


def test_legacy_uscc_is_rejected_without_the_flag() -> None:
    with pytest.raises(InvalidArgument) as exc:
        check_holder("USCC", LEGACY_USCC, accept_legacy_uscc=False, field="payload.holder")
    assert violation(exc) == ("payload.holder.id", "check character is M, expected 1")


def test_legacy_uscc_is_accepted_and_flagged_with_the_flag() -> None:
    checked = check_holder("USCC", LEGACY_USCC, accept_legacy_uscc=True)
    assert checked == CheckedHolder(Holder(IdType.USCC, LEGACY_USCC), legacy_uscc=True)


@pytest.mark.parametrize(
    "raw",
    [
        "91440300192189148B",  # Shenzhen (4403): not a Fujian code (issue 15, item 12)
        "91350102MA2Y0001X7",  # Fujian, but the national MA... series: a typo of ...X6
        "11350100M0001TGQXM",  # registration authority 1 (an agency), not the regulator
        "91350100A0001TGQXM",  # organisation part outside the pilot's M# series
        "913501000M001TGQXM",  # division 350100, then no M at position 9
    ],
)
def test_the_legacy_setting_admits_only_the_pilot_form(raw: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        check_holder("USCC", raw, accept_legacy_uscc=True)
    field, description = violation(exc)
    assert field == "holder.id"
    assert description.startswith(f"check character is {raw[-1]}, expected ")
    assert "accept_legacy_uscc admits only the pre-standard form" in description


def test_pilot_form_codes_other_than_the_example_are_admitted_and_flagged() -> None:
    for raw in ("91350100M0001TGQXA", "92350203M9ABCDEFGH"):  # Fuzhou; Xiamen, individual
        assert uscc_check_char(raw[:-1]) != raw[-1]
        checked = check_holder("USCC", raw, accept_legacy_uscc=True)
        assert checked == CheckedHolder(Holder(IdType.USCC, raw), legacy_uscc=True)
        with pytest.raises(InvalidArgument):
            check_holder("USCC", raw, accept_legacy_uscc=False)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("91350100M000100Y4", "has 18 characters, got 17"),
        ("91350100M000100Y433", "has 18 characters, got 19"),
        ("91350100O000100Y43", "'O' is not allowed"),
        ("91350100I000100Y43", "'I' is not allowed"),
        ("91350100S000100Y43", "'S' is not allowed"),
        ("91350100V000100Y43", "'V' is not allowed"),
        ("91350100Z000100Y43", "'Z' is not allowed"),
        ("91350100-000100Y43", "'-' is not allowed"),
        ("91350100M000100Y4\n", "whitespace"),
    ],
)
def test_structurally_invalid_uscc_is_rejected_even_with_the_legacy_flag(
    raw: str, fragment: str
) -> None:
    with pytest.raises(InvalidArgument) as exc:
        check_holder("USCC", raw, accept_legacy_uscc=True)
    field, description = violation(exc)
    assert field == "holder.id"
    assert fragment in description


@pytest.mark.parametrize("id_type", ["PASSPORT", "OTHER"])
def test_document_ids_are_kept_as_sent(id_type: str) -> None:
    checked = check_holder(id_type, "E12345678", accept_legacy_uscc=False)
    assert checked.holder == Holder(IdType(id_type), "E12345678")
    assert check_holder(id_type, "x" * MAX_DOCUMENT_ID_LENGTH, accept_legacy_uscc=False)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("", "must not be empty"),
        ("x" * (MAX_DOCUMENT_ID_LENGTH + 1), f"at most {MAX_DOCUMENT_ID_LENGTH}"),
        ("E123\x004567", "non-printable"),
        ("E123\u200b4567", "non-printable"),  # zero-width space
        (" E1234567", "whitespace"),
        ("E1234567 ", "whitespace"),
    ],
)
def test_bad_document_ids_are_rejected(raw: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        check_holder("PASSPORT", raw, accept_legacy_uscc=False)
    field, description = violation(exc)
    assert field == "holder.id"
    assert fragment in description


@pytest.mark.parametrize("id_type", ["", "resident_id", "SSN"])
def test_unknown_id_type_names_the_allowed_values(id_type: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        check_holder(id_type, "11010519491231002X", accept_legacy_uscc=False, field="q.holder")
    field, description = violation(exc)
    assert field == "q.holder.id_type"
    assert "RESIDENT_ID, USCC, PASSPORT, OTHER" in description
    assert exc.value.reason == "INVALID_HOLDER_ID_TYPE"


def test_key_is_what_the_audit_commitment_covers() -> None:
    assert Holder(IdType.USCC, "91350100M000100Y43").key() == "USCC:91350100M000100Y43"


def test_resident_id_generator_matches_the_published_example() -> None:
    assert resident_id("110105", datetime.date(1949, 12, 31), 2) == "11010519491231002X"


@pytest.mark.parametrize(
    ("region", "born", "sequence"),
    [
        ("11010", datetime.date(1990, 1, 1), 1),
        ("11010A", datetime.date(1990, 1, 1), 1),
        ("110105", datetime.date(1899, 12, 31), 1),
        ("110105", datetime.date(1990, 1, 1), 1000),
        ("110105", datetime.date(1990, 1, 1), -1),
    ],
)
def test_resident_id_generator_rejects_impossible_arguments(
    region: str, born: datetime.date, sequence: int
) -> None:
    with pytest.raises(ValueError):
        resident_id(region, born, sequence)


@pytest.mark.parametrize("prefix", ["9135010", "91350100M000100YI", "91350100M000100Y43"])
def test_uscc_generator_rejects_bad_prefixes(prefix: str) -> None:
    with pytest.raises(ValueError):
        uscc(prefix)


def test_check_char_functions_reject_bad_input() -> None:
    with pytest.raises(ValueError):
        resident_id_check_char("1101051949123100")
    with pytest.raises(ValueError):
        resident_id_check_char("1101051949123100A")
    with pytest.raises(ValueError):
        uscc_check_char("91350100M000100YO")


regions = st.text(alphabet="0123456789", min_size=6, max_size=6)
birth_dates = st.dates(min_value=datetime.date(1900, 1, 1), max_value=datetime.date(2020, 12, 31))
sequences = st.integers(min_value=0, max_value=999)
uscc_prefixes = st.text(alphabet=USCC_ALPHABET, min_size=17, max_size=17)


@given(regions, birth_dates, sequences)
def test_generated_resident_ids_validate(region: str, born: datetime.date, sequence: int) -> None:
    generated = resident_id(region, born, sequence)
    assert check_holder("RESIDENT_ID", generated, accept_legacy_uscc=False).holder.id == generated


@given(regions, birth_dates, sequences, st.sampled_from(RESIDENT_CHECK_CHARS))
def test_any_other_resident_check_char_fails(
    region: str, born: datetime.date, sequence: int, replacement: str
) -> None:
    generated = resident_id(region, born, sequence)
    tampered = generated[:-1] + replacement
    if tampered == generated:
        return
    with pytest.raises(InvalidArgument, match="check character"):
        check_holder("RESIDENT_ID", tampered, accept_legacy_uscc=True)


@given(uscc_prefixes)
def test_generated_usccs_validate(prefix: str) -> None:
    generated = uscc(prefix)
    checked = check_holder("USCC", generated.lower(), accept_legacy_uscc=False)
    assert checked == CheckedHolder(Holder(IdType.USCC, generated), legacy_uscc=False)


@given(uscc_prefixes, st.sampled_from(USCC_ALPHABET))
def test_any_other_uscc_check_char_fails_or_is_flagged_legacy(
    prefix: str, replacement: str
) -> None:
    generated = uscc(prefix)
    tampered = generated[:-1] + replacement
    if tampered == generated:
        return
    with pytest.raises(InvalidArgument, match="check character"):
        check_holder("USCC", tampered, accept_legacy_uscc=False)
    if is_pilot_uscc_form(tampered):
        assert check_holder("USCC", tampered, accept_legacy_uscc=True).legacy_uscc
    else:  # the setting admits the pilot form only
        with pytest.raises(InvalidArgument, match="admits only the pre-standard form"):
            check_holder("USCC", tampered, accept_legacy_uscc=True)


@given(uscc_prefixes)
def test_uscc_check_char_is_the_standard_weighted_sum(prefix: str) -> None:
    # GB 32100-2015 as written: weights 3^i mod 31, check = 31 - (sum mod 31), 31 -> 0.
    total = sum(USCC_ALPHABET.index(c) * pow(3, i, 31) for i, c in enumerate(prefix))
    assert uscc_check_char(prefix) == USCC_ALPHABET[(31 - total % 31) % 31]


def test_whitespace_is_what_str_isspace_says() -> None:
    # Every character Python calls whitespace is refused as whitespace in a USCC, and no
    # other (the Latin, punctuation and CJK-space ranges, and characters that look blank).
    candidates = [*map(chr, range(0x3001)), "\u180e", "\u200b", "\u2060", "\ufeff"]
    for c in candidates:
        with pytest.raises(InvalidArgument) as exc:
            check_holder("USCC", f"91350100M{c}000100Y43", accept_legacy_uscc=False)
        assert ("whitespace" in violation(exc)[1]) == c.isspace(), repr(c)
