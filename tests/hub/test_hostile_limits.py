"""Issue 6 item 2: every limit is a named constant whose comment says why, and the limits a
hostile client meets are the documented ones (docs/reliability.md lists them)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from certhub.core.rpc import channel
from certhub.hub.domain import certificate as payload_rules
from certhub.hub.grpc import errors as grpc_errors
from certhub.hub.grpc import server
from certhub.signing import MAX_ENVELOPE_BYTES, MAX_SIGNATURES

REPO = Path(__file__).resolve().parents[2]
# The server side: the hub and the libraries it serves with.
PACKAGES = ("hub", "core", "signing", "cache")
# Module-level constants whose names say they bound something.
CONSTANT = re.compile(r"^(_?[A-Z][A-Z0-9_]*)\s*(:[^=]+)?=\s*[-0-9(]")
LIMIT_WORDS = re.compile(
    r"MAX|MIN|LIMIT|TIMEOUT|BYTES|LENGTH|SECONDS|WIDTH|BATCH|IN_FLIGHT|PAGE_SIZE|WORKERS|TTL"
)
# Sizes fixed by a format rather than chosen (a SHA-256 is 32 bytes): no reason to give.
FORMAT_CONSTANTS = {"HASH_SIZE", "_KEY_HASH_SIZE"}


def _limits() -> list[tuple[str, int, str, list[str]]]:
    """(file, line, name, the lines above it up to the previous blank line)."""
    found = []
    for package in PACKAGES:
        for path in sorted((REPO / "certhub" / package).rglob("*.py")):
            lines = path.read_text(encoding="utf-8").splitlines()
            for number, line in enumerate(lines):
                match = CONSTANT.match(line)
                if not match or not LIMIT_WORDS.search(match.group(1)):
                    continue
                if match.group(1) in FORMAT_CONSTANTS:
                    continue
                above = []
                for previous in reversed(lines[:number]):
                    if not previous.strip():
                        break
                    above.append(previous.strip())
                found.append((str(path.relative_to(REPO)), number + 1, match.group(1), above))
    return found


LIMITS = _limits()


def test_limits_are_found() -> None:
    names = {name for _f, _n, name, _a in LIMITS}
    assert {"MAX_ENVELOPE_BYTES", "MAX_MESSAGE_BYTES", "MAX_JSON_DEPTH", "MAX_BATCH"} <= names


@pytest.mark.parametrize(
    ("path", "line", "name", "above"), LIMITS, ids=[f"{p}:{n}:{m}" for p, n, m, _a in LIMITS]
)
def test_every_limit_says_why(path: str, line: int, name: str, above: list[str]) -> None:
    """A limit is preceded by a comment: its own, or that of the block of limits it is in."""
    comments = [a for a in above if a.startswith("#")]
    assert comments, f"{path}:{line}: {name} has no comment saying why"


def test_limits_are_consistent_with_each_other() -> None:
    # One envelope plus one attachment must fit in one gRPC message, both ways.
    assert MAX_ENVELOPE_BYTES + payload_rules.MAX_ATTACHMENT_BYTES < server.MAX_MESSAGE_BYTES
    # The hub and its callers share one message limit (certhub.core.rpc.channel).
    assert server.MAX_MESSAGE_BYTES is channel.MAX_MESSAGE_BYTES
    # The JSON depth limit admits the deepest valid payload (payload > holder > value).
    assert payload_rules.MAX_JSON_DEPTH >= 2
    assert MAX_SIGNATURES >= 2  # a rotation overlap signs with two keys
    # A whole status (message twice: percent-encoded, and in base64 details) stays under the
    # 8 KiB soft limit of gRPC clients' trailers.
    message, details = grpc_errors.MAX_STATUS_MESSAGE_BYTES, grpc_errors.MAX_STATUS_DETAILS_BYTES
    assert 3 * message + (message + details + 256) * 4 // 3 < 8 * 1024 - 512
