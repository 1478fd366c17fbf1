"""Check-character arithmetic of holder IDs and certificate identifiers (GB 11643-1999,
GB 32100-2015, ISO 7064 MOD 37,36 for GB/T 36904), for the hub and the adapters alike.

These functions trust their callers to pass the right alphabet and length only after
saying so with a ``ValueError``; request validation (with field violations) lives in the
hub's ``certhub.hub.domain.holder`` and ``certhub.hub.domain.identifier``.
"""

from __future__ import annotations

import operator

#: GB 11643-1999 (ISO 7064 MOD 11-2) weights for the 17 body digits of a resident ID.
RESIDENT_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
#: GB 11643-1999: the check character indexed by the weighted sum mod 11.
RESIDENT_ID_CHECK_CHARS = "10X98765432"
#: A resident ID is 17 digits and one check character (GB 11643-1999).
RESIDENT_ID_LENGTH = 18

#: GB 32100-2015 character set: digits and capitals without I, O, S, V, Z (too easily
#: confused with 1, 0, 5, U, 2); a character's value is its index here.
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
#: A USCC is 17 body characters and one check character (GB 32100-2015).
USCC_LENGTH = 18
_USCC_MODULUS = 31

#: ISO 7064 MOD 37,36 (used by GB/T 36904 identifiers): digits then capitals, value = index.
MOD37_36_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"

# Tables computed once: every push checks two USCCs and a certificate id, and these run on
# the hub's request threads under one GIL (a generator per character cost more than the
# arithmetic).
_USCC_VALUES = {c: i for i, c in enumerate(USCC_ALPHABET)}
_USCC_CHARS = frozenset(USCC_ALPHABET)
# GB 32100-2015: the i-th body character's weight is 3^i mod 31.
_USCC_WEIGHTS = tuple(pow(3, i, _USCC_MODULUS) for i in range(USCC_LENGTH - 1))
# Per body position, each character's value times that position's weight: the weighted
# sum is then one lookup per character (two calls per character cost twice as much).
_USCC_WEIGHTED = tuple(
    {c: value * weight for c, value in _USCC_VALUES.items()} for weight in _USCC_WEIGHTS
)
_MOD37_36_CHARS = frozenset(MOD37_36_ALPHABET)


def _mod37_36_step(p: int, value: int) -> int:
    """One step of ISO 7064 MOD 37,36 (hybrid system): the next product from ``p``."""
    t = (p + value) % 36 or 36
    return (2 * t) % 37


#: ISO 7064 MOD 37,36's running product before the first character.
MOD37_36_START = 36
# What a running product can be: 2t mod 37 is never 0 for t in 1..36.
_MOD37_36_PRODUCTS = range(1, 37)

# [character][p] -> the next p; p stays in 1..36 and starts at MOD37_36_START.
_MOD37_36_STEPS = {
    c: tuple(_mod37_36_step(p, value) for p in range(37))
    for value, c in enumerate(MOD37_36_ALPHABET)
}


def resident_id_check_char(first17: str) -> str:
    """The GB 11643-1999 check character for 17 ASCII digits."""
    if len(first17) != RESIDENT_ID_LENGTH - 1 or not is_ascii_digits(first17):
        raise ValueError(f"expected 17 ASCII digits, got {first17!r}")
    total = sum(map(operator.mul, map(int, first17), RESIDENT_ID_WEIGHTS))
    return RESIDENT_ID_CHECK_CHARS[total % 11]


def uscc_check_char(first17: str) -> str:
    """The GB 32100-2015 check character for 17 characters of the USCC alphabet."""
    if len(first17) != USCC_LENGTH - 1 or not is_uscc_text(first17):
        raise ValueError(f"expected 17 characters of {USCC_ALPHABET}, got {first17!r}")
    total = sum(map(dict.__getitem__, _USCC_WEIGHTED, first17))
    return USCC_ALPHABET[(_USCC_MODULUS - total % _USCC_MODULUS) % _USCC_MODULUS]


def mod37_36_product(data: str, start: int = MOD37_36_START) -> int:
    """ISO 7064 MOD 37,36's running product after ``data`` (characters 0-9 A-Z), from
    ``start``: carried over a prefix that many identifiers share (type code and issuer),
    it spares each of them the steps over it."""
    if not _MOD37_36_CHARS.issuperset(data):
        raise ValueError(f"expected characters of 0-9A-Z, got {data!r}")
    return _mod37_36_steps(data, _checked_start(start))


def check_char_mod37_36(data: str, *, start: int = MOD37_36_START) -> str:
    """ISO 7064 MOD 37,36 check character over ``data`` (characters 0-9 A-Z); with
    ``start = mod37_36_product(prefix)``, that over ``prefix + data``."""
    if not data or not _MOD37_36_CHARS.issuperset(data):
        raise ValueError(f"expected one or more characters of 0-9A-Z, got {data!r}")
    return MOD37_36_ALPHABET[(37 - _mod37_36_steps(data, _checked_start(start))) % 36]


def _checked_start(start: int) -> int:
    if start not in _MOD37_36_PRODUCTS:
        raise ValueError(f"a running product is 1-36, got {start}")
    return start


def _mod37_36_steps(data: str, p: int) -> int:
    for c in data:
        p = _MOD37_36_STEPS[c][p]
    return p


def is_uscc_text(text: str) -> bool:
    return _USCC_CHARS.issuperset(text)


def is_uscc_shaped(text: str) -> bool:
    """18 characters of the USCC alphabet, whatever the check character says."""
    return len(text) == USCC_LENGTH and is_uscc_text(text)


def is_ascii_digits(text: str) -> bool:
    # str.isdigit() alone also accepts full-width and superscript digits.
    return text.isascii() and text.isdigit()


def has_surrounding_whitespace(text: str) -> bool:
    return text != text.strip()
