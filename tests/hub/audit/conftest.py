"""A group committer over the test database, for the tests that drive it without a Hub."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from certhub.hub.audit.committer import GroupCommitter
from certhub.hub.audit.log import AuditLog, AuditLogKeys
from certhub.hub.store.engine import make_session_factory
from certhub.signing import Algorithm, NoteSigner, PrivateKey


@pytest.fixture
def make_committer(engine: Engine) -> Iterator[Callable[..., GroupCommitter]]:
    """Group committers over the test database, with GroupCommitter's keyword arguments;
    each is closed after the test."""
    origin = "test.example/audit"
    keys = AuditLogKeys(
        origin=origin,
        signer=NoteSigner(origin, PrivateKey.generate(Algorithm.ED25519)),
        hmac_key=bytes(32),
    )
    running: list[GroupCommitter] = []

    def make(**options: Any) -> GroupCommitter:
        committer = GroupCommitter(
            sessions=make_session_factory(engine), audit_log=AuditLog(keys), **options
        )
        running.append(committer)
        return committer

    yield make
    for committer in running:
        committer.close()


@pytest.fixture
def committer(make_committer: Callable[..., GroupCommitter]) -> GroupCommitter:
    return make_committer()
