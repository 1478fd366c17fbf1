"""Fixtures shared by the signing tests: real keys, trusted-key factories, vector paths."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from certhub.signing.keys import Algorithm, KeyStatus, PrivateKey, TrustedKey

if TYPE_CHECKING:
    from collections.abc import Callable

REPO_ROOT = Path(__file__).resolve().parents[2]
VECTORS = REPO_ROOT.parent / "shared" / "vectors"

_OWNER = "11350100MB0000000A"
_SIGNED_ON = datetime.date(2024, 6, 1)


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    if not VECTORS.is_dir():
        pytest.skip(f"conformance vectors not found at {VECTORS}")
    return VECTORS


@pytest.fixture(scope="session", params=list(Algorithm), ids=str)
def private_key(request: pytest.FixtureRequest) -> PrivateKey:
    """One key per algorithm; tests using it run once for each."""
    algorithm: Algorithm = request.param
    return PrivateKey.generate(algorithm)


@pytest.fixture(scope="session")
def ed25519_key() -> PrivateKey:
    return PrivateKey.generate(Algorithm.ED25519)


@pytest.fixture(scope="session")
def ecdsa_key() -> PrivateKey:
    return PrivateKey.generate(Algorithm.ECDSA_P256_SHA256)


@pytest.fixture
def owner() -> str:
    """The department code that owns the keys built by ``make_trusted`` by default."""
    return _OWNER


@pytest.fixture
def signed_on() -> datetime.date:
    """A signing date inside the default validity window of ``make_trusted``."""
    return _SIGNED_ON


@pytest.fixture
def make_trusted() -> Callable[..., TrustedKey]:
    """Build a TrustedKey; the defaults make it usable on ``signed_on`` for ``owner``."""

    def make(
        key: PrivateKey,
        *,
        owner: str = _OWNER,
        not_before: datetime.date = datetime.date(2024, 1, 1),
        not_after: datetime.date | None = None,
        status: KeyStatus = KeyStatus.ACTIVE,
    ) -> TrustedKey:
        return TrustedKey(
            public_key=key.public_key,
            owner=owner,
            not_before=not_before,
            not_after=not_after,
            status=status,
        )

    return make
