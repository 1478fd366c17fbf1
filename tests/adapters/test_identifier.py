"""The adapter's GB/T 36904 identifiers (``certhub.core.identifier``) agree with the hub's rule, and
are stable."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from certhub.adapters.identifier import derived_serial, stream_key
from certhub.core.codes import check_char_mod37_36
from certhub.core.identifier import gbt_identifier, lineage_of
from certhub.hub.domain.identifier import lineage_of as hub_lineage_of
from certhub.hub.domain.identifier import parse_identifier

DESIGN_EXAMPLE = "1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.001.U"


def test_design_example_is_rebuilt_exactly() -> None:
    assert (
        gbt_identifier(
            type_code="11100000000013338W011",
            issuer="11430000006122244L",
            serial="20230000403",
            version=1,
        )
        == DESIGN_EXAMPLE
    )


@given(
    key=st.text(min_size=1, max_size=40),
    version=st.integers(min_value=1, max_value=999),
)
def test_derived_identifiers_parse_under_the_hubs_rule(key: str, version: int) -> None:
    serial = derived_serial(key)
    assert serial == derived_serial(key)  # same record, same serial, every run
    identifier = gbt_identifier(
        type_code="11350102MB0000001X001",
        issuer="11350102MB0000001X",
        serial=serial,
        version=version,
    )
    parsed = parse_identifier(identifier)
    assert (parsed.serial, parsed.version) == (serial, version)


def test_a_changed_character_changes_the_check() -> None:
    assert check_char_mod37_36("ABC123") != check_char_mod37_36("ABC124")


@pytest.mark.parametrize(
    ("part", "value"), [("serial", "gl-0001"), ("serial", ""), ("version", 1000)]
)
def test_unwritable_parts_are_refused(part: str, value: object) -> None:
    parts: dict[str, object] = {
        "type_code": "11350102MB0000001X001",
        "issuer": "11350102MB0000001X",
        "serial": "A1",
        "version": 1,
    }
    parts[part] = value
    with pytest.raises(ValueError, match=part):
        gbt_identifier(**parts)  # type: ignore[arg-type]


@given(
    serial=st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=24),
    versions=st.tuples(st.integers(1, 999), st.integers(1, 999)),
)
def test_lineage_agrees_with_the_hub_and_every_version_hashes_to_one_stream(
    serial: str, versions: tuple[int, int]
) -> None:
    ids = [
        gbt_identifier(
            type_code="11100000000013338W011", issuer="11430000006122244L", serial=serial, version=v
        )
        for v in versions
    ]
    for certificate_id in ids:
        assert lineage_of(certificate_id) == hub_lineage_of(certificate_id)
    assert stream_key(ids[0]) == stream_key(ids[1]) >= 0
    assert lineage_of("AMR-2024-0001") == hub_lineage_of("AMR-2024-0001")
