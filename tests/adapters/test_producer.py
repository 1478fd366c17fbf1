"""The key ring: which key signs what is dated when, during a rotation."""

from __future__ import annotations

import datetime as dt

from certhub.adapters.producer import KeyRing
from certhub.signing import Algorithm, PrivateKey


def test_the_next_key_signs_what_is_dated_from_its_not_before_once_that_day_has_come() -> None:
    current, following = (PrivateKey.generate(Algorithm.ED25519) for _ in range(2))
    takeover = dt.date(2027, 1, 1)
    ring = KeyRing(current=current, next=following, next_not_before=takeover)
    before, on = dt.date(2026, 12, 31), takeover
    # Before the day: the current key signs everything, whatever its date.
    assert ring.for_date(on, today=before) is current
    # From the day: by the certificate's date (the hub checks the key valid on it).
    assert ring.for_date(on, today=on) is following
    assert ring.for_date(dt.date(2030, 5, 1), today=on) is following
    assert ring.for_date(before, today=dt.date(2030, 5, 1)) is current
    assert KeyRing(current=current).for_date(on, today=on) is current
