"""Every USCC and resident ID in the guides and in `--help` is a valid one, so an example
copied literally is not refused for its check character (issue 15, item 4)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from certhub.hub.cli.main import build_parser
from certhub.hub.domain.holder import check_holder
from certhub.hub.errors import InvalidArgument

REPO = Path(__file__).resolve().parents[1]
# Whole tokens only: an 18-character USCC or resident ID, not part of a longer code (a
# certificate type code is a USCC plus three digits; certificate ids embed both).
_USCC = re.compile(r"(?<![0-9A-Z])[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}(?![0-9A-Z])")
_RESIDENT = re.compile(r"(?<![0-9A-Z])\d{17}[0-9X](?![0-9A-Z])")
GUIDES = ["README.md", "docs/api.md", "docs/operations.md", "docs/adapters.md"]


def _bad_codes(text: str) -> list[str]:
    bad = []
    for code in set(_USCC.findall(text)):
        try:
            check_holder("USCC", code, accept_legacy_uscc=False)
        except InvalidArgument as e:
            if not code.isdigit():  # an all-digit token is checked as a resident ID below
                bad.append(f"{code}: {e}")
    for code in set(_RESIDENT.findall(text)):
        try:
            check_holder("RESIDENT_ID", code, accept_legacy_uscc=False)
        except InvalidArgument:
            try:
                check_holder("USCC", code, accept_legacy_uscc=False)
            except InvalidArgument as e:
                bad.append(f"{code}: {e}")
    return sorted(bad)


@pytest.mark.parametrize("guide", GUIDES)
def test_codes_in_the_guides_are_valid(guide: str) -> None:
    assert _bad_codes((REPO / guide).read_text(encoding="utf-8")) == []


def test_codes_in_the_help_are_valid() -> None:
    parser = build_parser()
    [subparsers] = [a for a in parser._actions if a.dest == "command"]
    assert isinstance(subparsers.choices, dict)
    texts = [command.format_help() for command in subparsers.choices.values()]
    assert "USCC:" in "".join(texts)
    assert _bad_codes("\n".join(texts)) == []


def test_the_check_catches_a_wrong_check_character() -> None:
    assert _bad_codes("e.g. USCC:91350102MA2Y0001XX") != []
