"""How many refused calls of one principal get their own audit entry.

Every refusal is audited, so a client that keeps sending bad calls (a broken adapter in a
retry loop, a hostile one) would grow the permanent log without bound: one leaf per call.
``RefusalBudget`` is a token bucket per principal: each refusal that gets its own entry
takes a token. When a principal has none left, its next refusal is answered
RESOURCE_EXHAUSTED (reason ``REFUSALS_RATE_LIMITED``) and logged once as a summary entry
("refusal budget exhausted"); further refusals while the bucket is empty are answered the
same way with no entry, counted in ``certhub_refusals_suppressed``, and carry the summary
entry's index. Tokens come back at ``REFUSAL_RATE_PER_SECOND``; each refusal that finds one
is logged as usual. The suppression episode ends when the bucket is full again (the
principal stopped), so a principal causes at most one summary entry per refill time.

The log then grows by at most ``REFUSAL_BURST`` + ``REFUSAL_RATE_PER_SECOND`` x seconds
(plus one summary per ``REFUSAL_BURST / REFUSAL_RATE_PER_SECOND`` seconds) per principal and
hub process. Calls that succeed are never affected. The budget is per process: with
``--workers N`` a principal gets N of them (docs/trust.md).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

__all__ = [
    "REFUSAL_BURST",
    "REFUSAL_PRINCIPALS_MAX",
    "REFUSAL_RATE_PER_SECOND",
    "RefusalBudget",
    "Verdict",
]

# Refusals a principal may have logged one by one before the budget applies. An honest
# window or adapter is refused a handful of times a day (a typo, a stale id, a key being
# rotated); the hostile-input suites send a few hundred per principal. A thousand keeps
# every refusal of an honest client in the log (~0.3 MB of leaves) and bounds the rest.
REFUSAL_BURST = 1_000
# Refusals per second logged one by one once the burst is spent: 3,600 an hour (~1 MB of
# leaves) per principal and process, against the ~2,000 a second a hostile client could
# otherwise add.
REFUSAL_RATE_PER_SECOND = 1.0
# Principals whose buckets are kept (least recently refused forgotten first). A province has
# hundreds of principals; an unknown name needs a client certificate of the hub's CA, so
# the names are few. A forgotten bucket starts full again: at worst one more burst.
REFUSAL_PRINCIPALS_MAX = 10_000


class Kind(Enum):
    LOG = "log"  # audit this refusal as usual
    SUMMARY = "summary"  # answer RESOURCE_EXHAUSTED and log one summary entry
    SUPPRESS = "suppress"  # answer RESOURCE_EXHAUSTED, no entry


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: Kind
    # Seconds until the principal's next refusal would be logged again.
    retry_after: float = 0.0
    # The summary entry of this episode, once committed (for SUPPRESS).
    summary_index: int | None = None


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float
    suppressing: bool = False
    summary_index: int | None = None


class RefusalBudget:
    def __init__(
        self,
        *,
        burst: int = REFUSAL_BURST,
        rate_per_second: float = REFUSAL_RATE_PER_SECOND,
        principals: int = REFUSAL_PRINCIPALS_MAX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if burst < 1 or rate_per_second <= 0:
            raise ValueError("a refusal budget needs a burst of at least 1 and a positive rate")
        self._burst = burst
        self._rate = rate_per_second
        self._principals = principals
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    @property
    def burst(self) -> int:
        return self._burst

    def take(self, principal: str) -> Verdict:
        """The verdict for one more refusal of ``principal``."""
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(principal)
            if bucket is None:
                bucket = self._buckets[principal] = _Bucket(tokens=float(self._burst), at=now)
                while len(self._buckets) > self._principals:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(principal)
                bucket.tokens = min(
                    float(self._burst), bucket.tokens + (now - bucket.at) * self._rate
                )
                bucket.at = now
                if bucket.suppressing and bucket.tokens >= self._burst:
                    bucket.suppressing = False
                    bucket.summary_index = None
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return Verdict(Kind.LOG)
            retry_after = (1.0 - bucket.tokens) / self._rate
            if not bucket.suppressing:
                bucket.suppressing = True
                return Verdict(Kind.SUMMARY, retry_after)
            return Verdict(Kind.SUPPRESS, retry_after, bucket.summary_index)

    def summary_logged(self, principal: str, index: int) -> None:
        """Remember the episode's summary entry, for the suppressed refusals to cite."""
        with self._lock:
            bucket = self._buckets.get(principal)
            if bucket is not None and bucket.suppressing:
                bucket.summary_index = index
